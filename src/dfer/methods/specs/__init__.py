"""One registration module per method (torch-free): its config or the path to it, what it
reads, its defaults and its build entrypoint (:func:`dfer.methods.registry.register_method`).

Every module of this package is imported by :func:`dfer.methods.registry.list_methods`: adding a
method is adding its module here and its ``nn.Module`` in :mod:`dfer.methods`.
"""
