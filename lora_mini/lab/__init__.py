"""The lab: what the book's experiments and the command line run on top of the library core.

config (the dataclasses of a job), tasks and data (what to learn), trainer (the one loop, its
step policy), budget and checkpoint (time limits, resume), distributed (torchrun), graphs
(CUDA-graph steps), finetune and info (command-line jobs), and the experiment modules. The
core (`lora_mini/`) never imports anything from here.
"""
