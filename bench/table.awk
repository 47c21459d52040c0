# Renders one markdown table from bench/run.sh's results.tsv (mawk-compatible).
#
# Input rows: workload, allocator, rep, ok (1/0), wall_s, maxrss_kib, minflt, ops_s;
# "-" marks a value the run did not produce.
# Variables: title; col, the input column to show; div, its divisor to the display
# unit; fmt, the printf format of a value; workloads and allocs, space-separated
# row and column order; baseline, the allocator every ratio is relative to; second
# (optional), another allocator to give a geomean row against.
#
# A cell is the median over the successful repetitions and its ratio to the
# baseline's median; FAIL if any repetition failed (a partial median would hide
# it).  Rows where no run produced the value (e.g. ops/s of a workload that does
# not report it) are left out.  The last row is the geometric mean of each
# column's ratios over the workloads where both it and the baseline have a value
# (both non-zero: a count of 0 has no ratio), and the row after it the same against
# `second` when that allocator is among the columns.

BEGIN {
    nw = split(workloads, W, " ")
    na = split(allocs, A, " ")
}

{
    key = $1 SUBSEP $2
    if ($4 != 1)
        failed[key]++
    else if ($col != "-")
        values[key, ++n[key]] = $col / div
}

function median(key,    v, cnt, i, j, x) {
    cnt = n[key]
    for (i = 1; i <= cnt; i++)
        v[i] = values[key, i]
    for (i = 2; i <= cnt; i++) {    # insertion sort: there are only a few repetitions
        x = v[i]
        for (j = i - 1; j >= 1 && v[j] > x; j--)
            v[j + 1] = v[j]
        v[j + 1] = x
    }
    return cnt % 2 ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
}

function has_value(w, a) {
    return n[w, a] > 0 && !failed[w, a]
}

function cell(w, a,    m, base, base2) {
    if (failed[w, a])
        return "FAIL"
    if (!n[w, a])
        return "-"
    m = median(w SUBSEP a)
    if (second != "" && has_value(w, second)) {
        base2 = median(w SUBSEP second)
        if (base2 > 0 && m > 0) {
            logsum2[a] += log(m / base2)
            nratio2[a]++
        }
    }
    if (!has_value(w, baseline))
        return sprintf(fmt, m)
    base = median(w SUBSEP baseline)
    if (base > 0 && m > 0) {
        logsum[a] += log(m / base)
        nratio[a]++
    }
    return base > 0 ? sprintf(fmt " (%.2fx)", m, m / base) : sprintf(fmt, m)
}

function geomean_row(label, ls, nr,    i) {
    printf "\n| %s |", label
    for (i = 1; i <= na; i++)
        printf " %s |", nr[A[i]] ? sprintf("%.2fx", exp(ls[A[i]] / nr[A[i]])) : "-"
}

function row_wanted(w,    i) {
    for (i = 1; i <= na; i++)
        if (n[w, A[i]] || failed[w, A[i]])
            return 1
    return 0
}

END {
    for (r = 1; r <= nw; r++)
        if (row_wanted(W[r]))
            rows = rows sprintf("\n| %s |", W[r]) cells(W[r])
    if (rows == "")
        exit
    printf "\n### %s\n\n| workload |", title
    for (i = 1; i <= na; i++)
        printf " %s |", A[i]
    printf "\n|---|"
    for (i = 1; i <= na; i++)
        printf "---:|"
    printf "%s", rows
    geomean_row("geomean vs " baseline, logsum, nratio)
    for (i = 1; i <= na; i++)
        if (second != "" && A[i] == second && second != baseline)
            geomean_row("geomean vs " second, logsum2, nratio2)
    printf "\n"
}

function cells(w,    i, s) {
    for (i = 1; i <= na; i++)
        s = s " " cell(w, A[i]) " |"
    return s
}
