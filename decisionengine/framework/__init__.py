"""The decisionengine framework: dataspace, modules, logic engine, task manager, config, engine."""
