"""Workloads: everything a kind of trial decides, behind one protocol (``base.Workload``).

- ``gpt.ReferenceGPT``: the reference GPT on TinyStories (or local stories, or the offline sample);
- ``user.UserModel``: a user's model class and dataset (``flops_fit.find_optimal``);
- ``simulated.SimulatedLaw``: a known scaling law instead of training (design a sweep in seconds).

``flops_fit.data.stories.StoryData`` is the TinyStories data half the first two share.
"""
