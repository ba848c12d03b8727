"""Training pipelines: turning videos into GIM's training labels (:mod:`gim_plugins.training.video`)."""
