set -o pipefail
test -f /root/smollm2/m.part0 || { echo "fresh machine: stage again"; exit 3; }
cp .gpu/p2/m.part1 /root/smollm2/ || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
echo "code $(cat runs/code_version.txt)  $(date -u +%FT%TZ)"
python3 -m lora_mini bench --shape smollm2-1.7b --shapes 8x1024 --modes eager,graphed,compiled --methods full,peft,lora_mini,lora_mini_low,peft_gc,peft_gc_liger --steps 6 --warmup 2 --rank 16 --alpha 32 --budget-s ${BUDGET:-430} --out $OUT/bench_gpu_1.7b.json 2>&1 | grep -v "it/s\]" | tail -60
date -u +%FT%TZ
