set -o pipefail
mkdir -p /root/smollm2 && cp .gpu/p1/m.part0 /root/smollm2/ || exit 3
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/wheels/*.whl || exit 4
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch,transformers,peft;print('torch',torch.__version__,'transformers',transformers.__version__,'peft',peft.__version__)"
echo "code $(cat runs/code_version.txt)  $(date -u +%FT%TZ)"
for v in lora_full nofast nosplit noclip clear_ws; do python3 figures/graph_nan/bisect5.py $v > $OUT/bisect5_$v.log 2>&1 & done; wait
for v in lora_full nofast nosplit noclip clear_ws; do grep '^{' $OUT/bisect5_$v.log || tail -3 $OUT/bisect5_$v.log; done
cat $OUT/bisect5_*.json > /dev/null; date -u +%FT%TZ
