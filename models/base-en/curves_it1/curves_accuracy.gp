set terminal pngcairo noenhanced size 900,500 font "DejaVu Sans,10"
set output "/work/wt/lead/models/base-en/curves_it1/curves_accuracy.png"
set title "training"
set datafile missing "nan"
set grid
set key outside right top
set xlabel "step"
set ylabel "accuracy"
plot "/work/wt/lead/models/base-en/curves_it1/curves_accuracy.dat" using 1:2 with lines lw 2 title "acc_masked_0", '' using 1:3 with lines lw 2 title "acc_masked", '' using 1:4 with lines lw 2 title "acc_unmasked"
