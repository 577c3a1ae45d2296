# GF/s against n for convoy's inversion, OpenBLAS getrf+getri and OpenBLAS
# DGEMM, from the key=value lines of bench/kernel.
# Usage: gnuplot -e "in='build/bench_kernel.txt'; out='docs/kernel-gflops.svg'" bench/kernel.gp

# Rows of one kind and thread count as "n value" pairs.
col(kind, threads, key) = sprintf("< awk '$2 %s && / threads=%s / { n = v = \"\"; \
    for (i = 2; i <= NF; i++) { split($i, kv, \"=\"); if (kv[1] == \"n\") n = kv[2]; \
    if (kv[1] == \"%s\") v = kv[2] } if (n != \"\" && v != \"\") print n, v }' %s", \
    kind, threads, key, in)
inv = "~ /^n=/"
gemm = "== \"dgemm\""

set terminal svg size 760,460 dynamic font "sans,12" background "white"
set output out
set title "Matrix inversion, float64: GF/s = 2n^3 / t"
set xlabel "n"
set ylabel "GF/s"
set logscale x 2
set xrange [48:2800]
set yrange [0:*]
set grid
set key outside below
plot col(inv, "1", "convoy_gflops") using 1:2 with linespoints lw 2 lc rgb "#c0392b" title "convoy, 1 thread", \
     col(inv, "1", "openblas_gflops") using 1:2 with linespoints lw 2 lc rgb "#2471a3" title "OpenBLAS getrf+getri, 1 thread", \
     col(gemm, "1", "openblas_gflops") using 1:2 with linespoints lw 1 dt 2 lc rgb "#555555" title "OpenBLAS DGEMM, 1 thread", \
     col(inv, "2", "convoy_gflops") using 1:2 with linespoints lw 2 dt 3 lc rgb "#c0392b" title "convoy, 2 threads", \
     col(inv, "2", "openblas_gflops") using 1:2 with linespoints lw 2 dt 3 lc rgb "#2471a3" title "OpenBLAS getrf+getri, 2 threads", \
     col(gemm, "2", "openblas_gflops") using 1:2 with linespoints lw 1 dt 4 lc rgb "#999999" title "OpenBLAS DGEMM, 2 threads"
