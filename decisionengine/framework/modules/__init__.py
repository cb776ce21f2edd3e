"""The module API: base classes and decorators for sources, transforms and publishers.

Compatible with modules written for the HEPCloud Decision Engine::

    from decisionengine.framework.modules import Source, Transform, Publisher

gives the *files* ``Source``, ``Transform`` and ``Publisher``, each holding the base class of
the same name plus the decorators (``produces``, ``consumes``, ``supports_config``,
``describe``) and ``Parameter``.  This package deliberately imports none of them eagerly,
so ``from ... import Source`` resolves to the submodule.
"""
