"""Measurement step kinds, one module each, declared once in :mod:`testbed.steps.registry`.

A step kind (:class:`~testbed.steps.kind.StepKind`) bundles everything the
rest of the testbed needs to know about it: its scenario options model, its
runner, whether it uses the whole lab or two endpoints, whether it runs in
this process, its report section and its plots. Scenario loading, the
runner, preflight, the pytest plugin and the report all read the registry;
adding a kind is a module here and one line in the registry.
"""
