"""The toy lab: an MLP trained on 2-D mixtures with exact scores, and its figures."""
