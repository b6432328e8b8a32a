"nbdev's doc processors as `nbdev_preview` runs them, with one change: only exported cells and imports are executed."
import ast

from nbdev.processors import FilterDefaults, exec_show_docs


class exec_exports(exec_show_docs):
    """nbdev executes any cell that imports something, to render `show_doc`; a test cell that imports a module then
    runs without the cells before it and fails. Here a cell that exports (or shows docs) runs whole, any other only its
    imports."""
    def __call__(self, cell):
        if not self.nb.has_docs_ or not hasattr(self, "k") or cell.cell_type != "code":
            return
        if cell.directives_.keys() & {"export", "exports", "exporti", "exec_doc"} or "show_doc(" in cell.source:
            return super().__call__(cell)
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            return
        imports = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        if imports:
            self.k.run_cell("\n".join(imports))
        if self.k.exc:
            raise RuntimeError(f"Error in cell {cell.idx_}:\n{cell.source}") from self.k.exc


class DocFilters(FilterDefaults):
    "FilterDefaults with `exec_exports` in place of `exec_show_docs`."
    def base_procs(self):
        return [exec_exports if p is exec_show_docs else p for p in super().base_procs()]
