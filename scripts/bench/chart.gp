# chart.gp — the bar chart of scripts/bench.sh (gnuplot 5).
#
#   gnuplot -e "rps='rps.dat'; mbs='mbs.dat'; out='chart.png'; subtitle='...'" scripts/bench/chart.gp
#
# rps.dat and mbs.dat: one line per group, `"label" smolhttpd nginx python`, a value of NaN
# for "not measured" (no bar is drawn). Left panel: requests/s; right panel: MB/s (10^6 B/s).

if (!exists("rps")) rps = 'target/bench/chart-rps.dat'
if (!exists("mbs")) mbs = 'target/bench/chart-mbs.dat'
if (!exists("out")) out = 'target/bench/chart.png'
if (!exists("subtitle")) subtitle = ''

set terminal pngcairo size 1400,620 font 'DejaVu Sans,10' noenhanced
set output out
set datafile missing 'NaN'

set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.95 relative
set grid ytics lc rgb '#dddddd'
set border 3
set xtics nomirror scale 0
set ytics nomirror
set yrange [0:*]
set offsets 0, 0, graph 0.10, 0
set key below horizontal height 1

c_smol = '#d95f02'
c_nginx = '#1b9e77'
c_py = '#7570b3'

# Value labels sit on the bars: with 3 bars per cluster and gap 1, each bar is 1/4 wide.
fmt(v) = (v != v) ? '' : (v >= 10000 ? sprintf('%.0fk', v / 1000.0) : (v >= 100 ? sprintf('%.0f', v) : sprintf('%.1f', v)))

set multiplot layout 1,2 title 'smolhttpd vs nginx vs python3 -m http.server' . (subtitle eq '' ? '' : "\n" . subtitle)

set title 'requests/s (wrk -t2 -c10)'
set ylabel 'requests/s'
plot rps using 2:xtic(1) title 'smolhttpd' lc rgb c_smol, \
     ''  using 3 title 'nginx' lc rgb c_nginx, \
     ''  using 4 title 'python3 http.server' lc rgb c_py, \
     ''  using ($0 - 0.25):2:(fmt($2)) with labels offset 0,0.7 font ',8' notitle, \
     ''  using ($0):3:(fmt($3)) with labels offset 0,0.7 font ',8' notitle, \
     ''  using ($0 + 0.25):4:(fmt($4)) with labels offset 0,0.7 font ',8' notitle

set title "10 MB download (curl, median), by link MTU\n+buf: smolhttpd --tx-buffer 1 MiB --rx-buffer 64 KiB"
set ylabel 'MB/s'
plot mbs using 2:xtic(1) title 'smolhttpd' lc rgb c_smol, \
     ''  using 3 title 'nginx' lc rgb c_nginx, \
     ''  using 4 title 'python3 http.server' lc rgb c_py, \
     ''  using ($0 - 0.25):2:(fmt($2)) with labels offset 0,0.7 font ',8' notitle, \
     ''  using ($0):3:(fmt($3)) with labels offset 0,0.7 font ',8' notitle, \
     ''  using ($0 + 0.25):4:(fmt($4)) with labels offset 0,0.7 font ',8' notitle

unset multiplot
