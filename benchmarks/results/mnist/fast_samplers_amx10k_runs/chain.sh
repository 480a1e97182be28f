while pgrep -f "after.sh" >/dev/null; do sleep 5; done
bash /tmp/m24/student.sh g1u 15
bash /tmp/m24/refs.sh
echo CHAIN DONE
