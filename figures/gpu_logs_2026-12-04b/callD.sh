set -o pipefail
test -f /root/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf || { echo "fresh machine: stage again"; exit 3; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 LORA_MINI_GGUF=/root/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
echo "code $(cat runs/code_version.txt)  $(date -u +%FT%TZ)"
python3 -m lora_mini serve-bench --model smollm2-135m-instruct --budget-s ${B1:-260} --out $OUT/serve_gpu.json 2>&1 | tail -15
python3 -m lora_mini serve-bench --model smollm2-135m-instruct --dtype float32 --budget-s ${B2:-60} --out $OUT/serve_gpu_fp32.json 2>&1 | tail -15
date -u +%FT%TZ
