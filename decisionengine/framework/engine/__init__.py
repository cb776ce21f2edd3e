"""The daemon's core: channels in their own processes, the Reaper, logging, live events.

* :mod:`.DecisionEngine` -- the server's state and lifecycle (the reference's module name);
* :mod:`.workers` -- the server's handle on one channel process (supervision, watchdog);
* :mod:`.channel_process` -- what runs inside a channel's process;
* :mod:`.source_process` -- what runs inside a shared source's process;
* :mod:`.process_shell` -- what both of those run in (link, DataSpace, commands, exit);
* :mod:`.shared_sources` -- sources several channels name, once per server or cluster;
* :mod:`.cluster`, :mod:`.balance` -- servers sharing a DataSpace, who runs what;
* :mod:`.preload` -- the fork server's preloading (shared, frozen pages; :mod:`.warmup` runs a
  throw-away channel there first, so that its code is specialised once for every channel);
* :mod:`.memory_merging` -- channel processes ask the kernel to merge their identical pages (KSM);
* :mod:`.supervision` -- nothing the server starts outlives it (:mod:`.forkserver_guard`
  arms it in the fork server);
* :mod:`.leftovers` -- what a dead server left, cleared by the next one to start;
* :mod:`.events` -- live events (generations, state changes) for subscribers;
* :mod:`.logs` -- structured logging of every process through one writer;
* :mod:`.server_metrics` -- the server's own Prometheus metrics, and its processes' memory.

Nothing here serves HTTP or parses a command line: that is :mod:`..web` and :mod:`..cli`.
"""
