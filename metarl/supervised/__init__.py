"""Supervised MAML: sinusoid regression and Omniglot few-shot classification."""
