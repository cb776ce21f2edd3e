"""The demo channel: a small provisioning decision that runs with no network.

Two sources read snapshots shipped with the package (a batch job queue, and a catalogue
of resources with prices and capacity) and move to the next snapshot every period, so
the data, and the decision, change over time.  Two transforms compute the demand per
group of users and a figure of merit per resource, plus a provisioning plan; the logic
engine decides whether to provision; the publishers write provisioning requests (JSON
files) and a summary CSV.  See ``etc/decisionengine/config.d/demo.jsonnet``.
"""
