set terminal pngcairo noenhanced size 500,500 font "DejaVu Sans,10"
set output "/work/bm/cand/metrics/festival_pnmi/pnmi.png"
set title "PNMI per system and language"
set datafile missing "nan"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set ylabel "PNMI"
set xtics rotate by -30
set key outside right top
plot "/work/bm/cand/metrics/festival_pnmi/pnmi.dat" using 2:xtic(1) title "en"
