set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "code $(cat runs/code_version.txt)  $(date -u +%FT%TZ)"
for v in lora_full no_step; do python3 figures/graph_nan/bisect5.py $v > /tmp/b5_$v.log 2>&1 & done
for v in plain lora_eager; do python3 figures/graph_nan/bisect4.py $v > /tmp/b4_$v.log 2>&1 & done; wait
for f in /tmp/b5_*.log /tmp/b4_*.log; do grep '^{' $f || tail -3 $f; done
python3 -m lora_mini bench --shape smollm2-1.7b --shapes 8x1024 --modes eager,graphed --methods full,lora_mini,peft --steps 6 --warmup 2 --rank 16 --alpha 32 --budget-s ${BUDGET:-150} --out $OUT/bench_gpu_1.7b_fix.json 2>&1 | grep -v "it/s\]" | tail -14
date -u +%FT%TZ
