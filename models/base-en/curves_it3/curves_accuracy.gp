set terminal pngcairo noenhanced size 900,500 font "DejaVu Sans,10"
set output "models/base-en/curves_it3/curves_accuracy.png"
set title "training"
set datafile missing "nan"
set grid
set key outside right top
set xlabel "step"
set ylabel "accuracy"
plot "models/base-en/curves_it3/curves_accuracy.dat" using 1:2 with lines lw 2 title "acc_masked_0", '' using 1:3 with lines lw 2 title "acc_masked_1", '' using 1:4 with lines lw 2 title "acc_masked_2", '' using 1:5 with lines lw 2 title "acc_masked", '' using 1:6 with lines lw 2 title "acc_unmasked", '' using 1:7 with lines lw 2 title "acc_masked_4", '' using 1:8 with lines lw 2 title "acc_masked_3"
