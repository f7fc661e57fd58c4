set -o pipefail
test -f /root/smollm2/m.part1 || { echo "fresh machine: stage again"; exit 3; }
cd /root/smollm2 && cat m.part0 m.part1 $OLDPWD/.gpu/p3/m.part2 > SmolLM2-135M-Instruct.Q4_1.gguf && echo "$(cat $OLDPWD/.gpu/p3/m.md5)  SmolLM2-135M-Instruct.Q4_1.gguf" | md5sum -c - || exit 3
cd $OLDPWD
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 LORA_MINI_GGUF=/root/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf OMP_NUM_THREADS=2
echo "code $(cat runs/code_version.txt)  $(date -u +%FT%TZ)"
W=figures/without_regret
S="--batch-sizes 8 --steps 800 --budget-s 530"
Q="--batch-sizes 32 --steps 200 --budget-s 530"
bash scripts/gpu/run_all.sh --deadline-s ${DEADLINE:-545} \
 "sweep --methods full --ranks 16 --lrs 1e-4 $S --seed 1 --out $W/regret_d_b8_full_s1_lr1e-4.jsonl" \
 "sweep --methods full --ranks 16 --lrs 3e-5 $S --seed 1 --out $W/regret_d_b8_full_s1_lr3e-5.jsonl" \
 "sweep --methods lora --ranks 4 --lrs 3e-4 $S --seed 0 --out $W/regret_d_b8_lora4_s0_lr3e-4.jsonl" \
 "sweep --methods lora --ranks 4 --lrs 1e-3 $S --seed 1 --out $W/regret_d_b8_lora4_s1_lr1e-3.jsonl" \
 "sweep --methods lora --ranks 16 --lrs 1.6870239755710473e-3,5.334838230116768e-3 $Q --seed 0 --out $W/regret_d_b32_lora16_s0_quarter.jsonl" \
 "sweep --methods lora --ranks 16 --lrs 1.6870239755710473e-3,5.334838230116768e-3 $Q --seed 1 --out $W/regret_d_b32_lora16_s1_quarter.jsonl" \
 "lr_brackets full --seeds 2 --tag _ext2 --full-lrs 5e-3,1e-2 --strategy eager" \
 "rl 80 --lora-lrs 3e-5,3e-3 --full-lrs 1e-5"
ls -la $OUT; date -u +%FT%TZ
