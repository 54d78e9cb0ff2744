"""The pieces of ``benchmarks/bench_pretrain_throughput.py``, one job per module.

* :mod:`.settings` -- the options, the variants and the issue goals;
* :mod:`.data`     -- the corpus in both layouts (:mod:`xlint.preprocess.synthetic_corpus`, or real text);
* :mod:`.commands` -- the ``fairseq-train`` command line of each variant;
* :mod:`.worker`   -- the training process: fairseq's own ``fairseq-train`` with timing fields and turns;
* :mod:`.runs`     -- starting the runs, handing out turns, reading their logs;
* :mod:`.stats`    -- medians, quartiles, paired ratios, the summary;
* :mod:`.params`   -- the in-process parameter breakdown of each variant;
* :mod:`.report`   -- the Markdown report and the JSON result.
"""
