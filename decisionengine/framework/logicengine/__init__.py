"""The logic engine: facts over products, rules over facts, actions naming publishers.

* :mod:`.expressions` -- parsing and allow-list checking of fact and rule expressions;
* :mod:`.limits` -- resource limits (exponents, repetitions) shared with client queries;
* :mod:`.errors` -- ``ExpressionError``, raised by every check;
* :mod:`.facts` -- one named fact: evaluation against a data block;
* :mod:`.rules` -- rules, their dependency order and cascades of new facts;
* :mod:`.LogicEngine` -- the ``LogicEngine`` module configured in a channel's ``logicengines``;
* :mod:`.policy` -- which publishers run when a channel has zero or one logic engine.

This package never imports the task manager or the engine.
"""
