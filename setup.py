# The nbdev 2 template setup.py: every setting lives in settings.ini; edit there, not here.
from configparser import ConfigParser
import setuptools, shlex, shutil
from pathlib import Path
from setuptools.command.build_py import build_py

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

cfg_keys = 'version description keywords author author_email'.split()
expected = cfg_keys + "lib_name user branch license status min_python audience language".split()
for o in expected: assert o in cfg, "missing expected setting: {}".format(o)
setup_cfg = {o:cfg[o] for o in cfg_keys}

# SPDX identifiers (setuptools deprecates license classifiers)
licenses = {'apache2': 'Apache-2.0', 'mit': 'MIT', 'gpl2': 'GPL-2.0-only', 'gpl3': 'GPL-3.0-only', 'bsd3': 'BSD-3-Clause'}
statuses = [ '1 - Planning', '2 - Pre-Alpha', '3 - Alpha',
    '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive' ]
py_versions = '3.10 3.11 3.12 3.13'.split()

requirements = shlex.split(cfg.get('requirements', ''))
if cfg.get('pip_requirements'): requirements += shlex.split(cfg.get('pip_requirements', ''))
min_python = cfg['min_python']
lic = licenses.get(cfg['license'].lower(), cfg['license'])
dev_requirements = shlex.split(cfg.get('dev_requirements') or '')
# `tpv[cluster]`: Dask distributed for `tpv reproduce --cluster`; the dev extra includes it, so `make test` tests it
cluster_requirements = shlex.split(cfg.get('cluster_requirements') or '')
# `tpv[docs]`: what `make docs` builds the site with; the dev extra includes it, so `make test` checks the site
docs_requirements = shlex.split(cfg.get('docs_requirements') or '')

class build_py_with_notebooks(build_py):
    "Ship the experiment notebooks (nbs/experiments) inside the package, so `tpv reproduce` works from a plain `pip install`."
    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False): return  # an editable install reads nbs/experiments in place
        dest = Path(self.build_lib)/cfg['lib_path']/'experiment_notebooks'
        dest.mkdir(parents=True, exist_ok=True)
        for nb in sorted(Path('nbs/experiments').glob('*.ipynb')): shutil.copy2(nb, dest/nb.name)

setuptools.setup(
    name = cfg['lib_name'],
    cmdclass = {'build_py': build_py_with_notebooks},
    license_files = ['LICENSE'],
    license = lic,
    classifiers = [
        'Development Status :: ' + statuses[int(cfg['status'])],
        'Intended Audience :: ' + cfg['audience'].title(),
        'Natural Language :: ' + cfg['language'].title(),
    ] + ['Programming Language :: Python :: '+o for o in py_versions[py_versions.index(min_python):]],
    url = cfg['git_url'],
    packages = setuptools.find_packages(include=[cfg['lib_path'], cfg['lib_path'] + '.*']),
    include_package_data = True,
    install_requires = requirements,
    extras_require={ 'dev': dev_requirements + cluster_requirements + docs_requirements, 'cluster': cluster_requirements,
                     'docs': docs_requirements },
    dependency_links = cfg.get('dep_links','').split(),
    python_requires  = '>=' + cfg['min_python'],
    long_description = open('README.md', encoding='utf-8').read(),
    long_description_content_type = 'text/markdown',
    zip_safe = False,
    entry_points = {
        'console_scripts': cfg.get('console_scripts','').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d']
    },
    **setup_cfg)
