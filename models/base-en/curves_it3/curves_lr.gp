set terminal pngcairo noenhanced size 900,500 font "DejaVu Sans,10"
set output "models/base-en/curves_it3/curves_lr.png"
set title "training"
set datafile missing "nan"
set grid
set key outside right top
set xlabel "step"
set ylabel "learning rate"
plot "models/base-en/curves_it3/curves_lr.dat" using 1:2 with lines lw 2 title "lr"
