#!/usr/bin/perl
# Preload suite, perl case: hashes, arrays, regexes, sorting, string growth and a few
# forked children, all deterministic; prints counts and digests on stdout.
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);
use POSIX ();

sub d16 { return substr(sha256_hex(join("\n", @_)), 0, 16) }

my @words = qw(alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima
    mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu);

# 1. A big hash of records; delete a third; rebuild part of it with other sizes.
my %h;
for my $i (1 .. 150_000) {
    my $k = sprintf("key%07d", ($i * 7919) % 1_000_003);
    $h{$k} = [$i, $words[$i % @words] x (1 + $i % 7), { n => $i, sq => $i * $i % 10007 }];
}
my $n = 0;
for my $k (sort keys %h) {
    delete $h{$k} if $n++ % 3 == 0;
}
for my $i (1 .. 50_000) {
    $h{"extra$i"} = [-$i, "z" x ($i % 300), { n => -$i }];
}
my @keys = sort keys %h;
my $sum = 0;
$sum += $h{$_}[2]{n} for @keys;
print "hash: ", scalar(@keys), " keys, sum $sum, ", d16(map { "$_=$h{$_}[1]" } @keys), "\n";

# 2. Arrays of arrays, sorted with a multi-key comparator.
my @a = map { [$_, ($_ * $_) % 1009, join(",", ($_ % 97) x ($_ % 9))] } 1 .. 150_000;
my @s = sort { $a->[1] <=> $b->[1] or length($b->[2]) <=> length($a->[2]) or $a->[0] <=> $b->[0] } @a;
print "sort: ", scalar(@s), " first $s[0][0] last $s[-1][0] ", d16(map { $_->[0] } @s), "\n";
my @rev = reverse sort { $a <=> $b } map { $_->[1] } @a;
my %seen;
my @uniq = grep { !$seen{$_}++ } @rev;
print "uniq: ", scalar(@uniq), " max $uniq[0] min $uniq[-1]\n";

# 3. Regex work over generated text.
my $text = "";
for my $i (1 .. 60_000) {
    $text .= $words[($i * 7) % @words] . ($i % 10 ? " " : "$i.\n");
}
my %freq;
$freq{$1}++ while $text =~ /\b([a-z]+o)\b/g;
print "regex freq: ", join(" ", map { "$_=$freq{$_}" } sort keys %freq), "\n";
(my $t2 = $text) =~ s/\b(\w)(\w*)\b/\u$1\L$2/g;
my $caps = () = $t2 =~ /[A-Z]/g;
my @sentences = split /\.\n/, $t2;
my @numbers = $text =~ /(\d+)\./g;
my $vowels = ($text =~ tr/aeiou//);
print "regex: caps $caps sentences ", scalar(@sentences), " numbers ", scalar(@numbers),
    " vowels $vowels ", d16($t2), "\n";
my %byfirst;
push @{ $byfirst{ substr($_, 0, 1) } }, $_ for split /\s+/, $text;
print "groups: ", join(",", map { "$_:" . scalar(@{ $byfirst{$_} }) } sort keys %byfirst), "\n";

# 4. String growth and sprintf of floats.
my $big = "";
$big .= sprintf("%.6f|", sqrt($_) * 1.5) for 1 .. 200_000;
my @parts = split /\|/, $big;
print "floats: ", length($big), " ", scalar(@parts), " ", d16($big), "\n";

# 5. Forked children compute and report through their exit status and a pipe.
my @kids;
for my $c (1 .. 4) {
    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        close $r;
        my %ch;
        $ch{ $_ * $c } = "v" x ($_ % 50) for 1 .. 30_000 + 997 * $c;
        my $tot = 0;
        $tot += length($ch{$_}) for keys %ch;
        print {$w} "child $c total $tot\n";
        close $w;
        exit($tot % 251);
    }
    close $w;
    push @kids, [$c, $pid, $r];
}
for my $k (@kids) {
    my ($c, $pid, $r) = @$k;
    my $line = <$r>;
    close $r;
    waitpid($pid, 0);
    chomp $line;
    print "$line exit ", ($? >> 8), "\n";
}
print "done\n";
