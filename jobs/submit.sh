#!/usr/bin/env bash
# Submit an Evolution Engine run to a Ray cluster:
#   RAY_ADDRESS=http://HEAD:8265 jobs/submit.sh model=local model.path=/models/Qwen2.5-7B-Instruct \
#       cluster=gpu data=file data.path=/shared/seeds.jsonl run.output_dir=/shared/runs/qwen7b
# Ray 2.60 clusters started with `ray start --head` use token authentication: set RAY_AUTH_MODE=token and make
# the cluster's token available (the head writes it to ~/.ray/auth_token; copy it to the submitting machine).
# Give run.output_dir an absolute path on storage every node can reach: a relative path would land in the
# job's temporary working directory on the head node.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"  # Ray 2.60 heads require token auth: keep it on
: "${RAY_ADDRESS:?set RAY_ADDRESS to the dashboard address of the cluster, e.g. http://HEAD:8265}"
# RUNTIME_ENV picks another runtime_env file; ENTRYPOINT_NUM_CPUS reserves CPUs for the driver (the GPU jobs
# set both).
exec ray job submit --address "$RAY_ADDRESS" --working-dir . --runtime-env "${RUNTIME_ENV:-jobs/runtime_env.yaml}" \
    ${ENTRYPOINT_NUM_CPUS:+--entrypoint-num-cpus "$ENTRYPOINT_NUM_CPUS"} \
    -- python -m engine "$@"
