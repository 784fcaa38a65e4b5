#!/usr/bin/env bash
# Several 8 x 80 GB nodes: a 72B responder/evolver with tensor parallelism 4 and a 1-GPU base scorer.
# cluster.actor_num_gpus=0: each stage actor reserves no GPU and vLLM places its tp x pp workers in a placement
# group of its own (the `ray` executor), so a TP=4 model and a TP=1 scorer share one cluster config. Per round:
# evolve and respond take pool_size x 4 GPUs each and score pool_size x 1: pool_size=2 needs 18 GPUs (3 nodes).
# vLLM builds that placement group from the node its actor runs on: that node needs a free GPU.
#   RAY_ADDRESS=http://HEAD:8265 RAY_AUTH_MODE=token jobs/gpu_multi_node.sh \
#       model.path=/models/Qwen2.5-72B-Instruct scorer.path=/models/Meta-Llama-3-8B \
#       data=file data.path=/shared/seeds.jsonl run.output_dir=/shared/runs/qwen72b
# Model directories and run.output_dir must be on storage every node reads (the same path everywhere).
# Token authentication stays on: RAY_AUTH_MODE=token and the head's ~/.ray/auth_token on the submitting machine.
set -euo pipefail
# The driver only plans and commits: one CPU; the GPUs go to the stage actors.
RUNTIME_ENV=jobs/runtime_env_gpu.yaml ENTRYPOINT_NUM_CPUS=1 exec "$(dirname "$0")/submit.sh" \
    model=qwen2.5-72b-instruct scorer=llama-3-8b cluster=gpu \
    cluster.pool_size=2 cluster.actor_num_gpus=0 cluster.batch_size=256 "$@"
