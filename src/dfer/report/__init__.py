"""The report stage: one table of metrics across runs, folds and datasets, stage statistics
(clips processed, failures, detection rates) and the plots that go with them."""
