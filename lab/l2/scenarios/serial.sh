# Push a known block of text through the serial port; the host checks the last line arrived.
i=1
while [ $i -le 100 ]; do
    echo "LAB-SERIAL $i 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    i=$((i+1))
done
echo "LAB-SERIAL-END 100"
