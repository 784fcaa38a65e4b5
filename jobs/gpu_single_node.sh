#!/usr/bin/env bash
# One 8 x 80 GB node: a 1-GPU evolver/responder and a 1-GPU base scorer through vLLM. Every model stage of a
# round (evolve, respond, score) holds cluster.pool_size actors at once, so pool_size=2 uses 6 of the 8 GPUs.
#   RAY_ADDRESS=http://HEAD:8265 RAY_AUTH_MODE=token jobs/gpu_single_node.sh \
#       model.path=/models/Qwen2.5-7B-Instruct scorer.path=/models/Meta-Llama-3-8B \
#       data=file data.path=/shared/seeds.jsonl run.output_dir=/shared/runs/qwen7b
# Ray 2.60 clusters started with `ray start --head` use token authentication: keep RAY_AUTH_MODE=token and copy
# the head's ~/.ray/auth_token to the submitting machine. Extra arguments override the defaults below.
set -euo pipefail
# The driver only plans and commits: one CPU; the GPUs go to the stage actors.
RUNTIME_ENV=jobs/runtime_env_gpu.yaml ENTRYPOINT_NUM_CPUS=1 exec "$(dirname "$0")/submit.sh" \
    model=qwen2.5-7b-instruct scorer=llama-3-8b cluster=gpu \
    cluster.pool_size=2 cluster.actor_num_gpus=1 cluster.batch_size=256 "$@"
