set terminal pngcairo noenhanced size 900,500 font "DejaVu Sans,10"
set output "models/base-en/curves_it3/curves_loss.png"
set title "training"
set datafile missing "nan"
set grid
set key outside right top
set xlabel "step"
set ylabel "loss"
plot "models/base-en/curves_it3/curves_loss.dat" using 1:2 with lines lw 2 title "loss", '' using 1:3 with lines lw 2 title "loss_0", '' using 1:4 with lines lw 2 title "loss_1", '' using 1:5 with lines lw 2 title "loss_2", '' using 1:6 with lines lw 2 title "loss_4", '' using 1:7 with lines lw 2 title "loss_3"
