"""A plugin's own test: jestbench's conformance kit, called from the plugin's pytest."""

from jestbench_example_plugin import LearnabilityMix

import jestbench


def test_learnability_mix_conforms():
    jestbench.check_strategy(LearnabilityMix)


def test_learnability_mix_conforms_at_the_extremes():
    jestbench.check_strategy(lambda: LearnabilityMix(fraction=0.0))
    jestbench.check_strategy(lambda: LearnabilityMix(fraction=1.0))
