"""Modules shipped with decisionengine (installed as ``decisionengine.modules``)."""
