#!/usr/bin/perl
# Splits a stream of Redis commands in the Redis protocol (RESP, what
# bench/seed.awk writes) by Redis Cluster hash slot, for bench/run.sh's
# private cluster:
#
#   awk -v n=100000 -f bench/seed.awk |
#       perl bench/cluster-split.pl DIR 0-5460:PORT1 5461-10922:PORT2 ...
#
# Every command goes, unchanged, to DIR/PORT.resp of the master whose slot
# range holds its key (the command's second word): slot = CRC16-XMODEM of
# the key, or of its hash tag (the part between the first "{" and the next
# "}" when that part is not empty), mod 16384, as Redis Cluster computes it.
# Feed each file with `redis-cli -p PORT --pipe < DIR/PORT.resp`. Prints
# "PORT COMMANDS" for every master; fails on a malformed stream, a command
# without a key, or a slot no range covers.
use strict;
use warnings;

my ($dir, @ranges) = @ARGV;
die "usage: $0 DIR START-END:PORT...\n" unless defined $dir && @ranges;

# CRC16-XMODEM (polynomial 0x1021, initial value 0), table driven
my @table;
for my $i (0 .. 255) {
    my $crc = $i << 8;
    for (1 .. 8) {
        $crc = ($crc & 0x8000) ? (($crc << 1) ^ 0x1021) : ($crc << 1);
        $crc &= 0xffff;
    }
    $table[$i] = $crc;
}

sub crc16 {
    my $crc = 0;
    $crc = (($crc << 8) & 0xffff) ^ $table[(($crc >> 8) ^ $_) & 0xff] for unpack 'C*', $_[0];
    return $crc;
}

sub key_slot {
    my ($key) = @_;
    my $s = index($key, '{');
    if ($s >= 0) {
        my $e = index($key, '}', $s + 1);
        $key = substr($key, $s + 1, $e - $s - 1) if $e > $s + 1;
    }
    return crc16($key) % 16384;
}

# slot -> file handle of its master
my (@owner, %fh, %count);
for my $r (@ranges) {
    my ($lo, $hi, $port) = $r =~ /^(\d+)-(\d+):(\d+)$/ or die "$0: bad range '$r' (START-END:PORT)\n";
    die "$0: bad range '$r'\n" if $hi < $lo || $hi > 16383;
    unless ($fh{$port}) {
        open($fh{$port}, '>:raw', "$dir/$port.resp") or die "$0: $dir/$port.resp: $!\n";
        $count{$port} = 0;
    }
    $owner[$_] = $port for $lo .. $hi;
}

# one command at a time, copied as it came: "*<count>", then per word
# "$<length>" and the word (which may itself hold CRLF)
binmode STDIN;
$/ = "\r\n";
while (defined(my $head = <STDIN>)) {
    my ($n) = $head =~ /^\*(\d+)\r\n\z/ or die "$0: expected '*<count>', got '$head'\n";
    my ($raw, $key) = ($head, undef);
    for my $i (1 .. $n) {
        my $h = <STDIN>;
        my ($len) = defined $h ? $h =~ /^\$(\d+)\r\n\z/ : () or die "$0: expected '\$<length>'\n";
        my $v = <STDIN>;
        while (defined $v && length($v) < $len + 2) {
            my $more = <STDIN>;
            last unless defined $more;
            $v .= $more;
        }
        die "$0: truncated or malformed input\n" unless defined $v && length($v) == $len + 2;
        $raw .= $h . $v;
        $key = substr($v, 0, $len) if $i == 2;
    }
    die "$0: a command without a key\n" unless defined $key;
    my $port = $owner[key_slot($key)];
    die "$0: no range covers the slot of '$key'\n" unless defined $port;
    print { $fh{$port} } $raw;
    $count{$port}++;
}

for my $port (sort { $a <=> $b } keys %fh) {
    close($fh{$port}) or die "$0: $dir/$port.resp: $!\n";
    print "$port $count{$port}\n";
}
