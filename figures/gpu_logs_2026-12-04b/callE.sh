set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "code $(cat runs/code_version.txt)  $(date -u +%FT%TZ)"
V="plain_strided plain_contig"
for v in $V; do python3 figures/graph_nan/bisect6.py $v > /tmp/b6_$v.log 2>&1 & done; wait
for v in $V; do grep "^{" /tmp/b6_$v.log || tail -3 /tmp/b6_$v.log; done
date -u +%FT%TZ
