package LoyaltyTest::HTTP;

# The HTTP client (build a request, parse a response, one request, a
# request started now and read later, keep-alive sequences, many
# requests at once) and the load generator (client processes that keep
# requesting until stop_load).  A part of LoyaltyTest
# (t/lib/LoyaltyTest.pm): its methods run on a LoyaltyTest object.

use strict;
use warnings;

use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK);
use File::Path ();
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);

use LoyaltyTest::Core qw($SLOW _wait_child _write_all);

# ---------------------------------------------------------------------------
# HTTP client
# ---------------------------------------------------------------------------

sub _build_request {
    my ($self, %a) = @_;
    my $method = $a{method} // 'GET';
    my $path   = $a{path}   // '/';
    my $body   = $a{body}   // '';
    utf8::encode($body) if utf8::is_utf8($body);
    my @h;
    if (ref $a{headers} eq 'HASH') {
        @h = map { [ $_, $a{headers}{$_} ] } sort keys %{ $a{headers} };
    } elsif (ref $a{headers} eq 'ARRAY') {
        my @l = @{ $a{headers} };
        push @h, [ splice @l, 0, 2 ] while @l;
    }
    my %have = map { lc $_->[0] => 1 } @h;
    unshift @h, [ Host => 'localhost' ] unless $have{host};
    push @h, [ Connection => 'close' ]
        unless $have{connection} || $a{_keepalive};
    push @h, [ 'Content-Length' => length $body ]
        if !$have{'content-length'} && !$have{'transfer-encoding'}
           && (length $body || $method =~ /^(?:POST|PUT|PATCH)$/);
    my $req = "$method $path HTTP/" . ($a{http_version} // '1.1') . "\r\n"
            . join('', map { "$_->[0]: $_->[1]\r\n" } @h)
            . "\r\n" . $body;
    return ($req, $method);
}

sub _connect {
    my ($port, $timeout) = @_;
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                 Proto => 'tcp', Timeout => $timeout);
}

# Try to parse one response from $buf.  Returns (response, consumed) when
# complete, () when more data is needed.  With $eof, always returns.
sub _parse_response {
    my ($buf, $method, $eof) = @_;
    my $start = 0;
    while (1) {
        my $rest = substr($buf, $start);
        unless ($rest =~ /\A(.*?)\r?\n\r?\n/s) {
            return () unless $eof;
            return ({ status => undef, headers => {}, header_list => [],
                      body => '', raw => $buf,
                      error => length $buf ? 'incomplete response headers'
                                           : 'empty response' },
                    length $buf);
        }
        my $hlen = $+[0];
        my ($sl, @lines) = split /\r?\n/, $1;
        my %r = (raw => '', body => '', headers => {}, header_list => []);
        if ($sl =~ m{^HTTP/(\d+\.\d+)\s+(\d{3})(?:\s+(.*))?$}) {
            @r{qw(version status reason)} = ($1, 0 + $2, $3 // '');
        } else {
            return ({ %r, status => undef, raw => $buf,
                      error => "bad status line: $sl" }, length $buf);
        }
        for my $l (@lines) {
            if ($l =~ /^[ \t]+(.*)/ && @{ $r{header_list} }) {
                $r{header_list}[-1][1] .= " $1";
                next;
            }
            my ($n, $v) = $l =~ /^([^:]*):[ \t]*(.*?)[ \t]*$/ or next;
            push @{ $r{header_list} }, [ $n, $v ];
        }
        for my $h (@{ $r{header_list} }) {
            my $k = lc $h->[0];
            $r{headers}{$k} = exists $r{headers}{$k}
                ? "$r{headers}{$k}, $h->[1]" : $h->[1];
        }
        my $pos = $start + $hlen;

        # interim 1xx responses (except 101) are skipped
        if ($r{status} >= 100 && $r{status} < 200 && $r{status} != 101) {
            $start = $pos;
            next;
        }

        my $te = $r{headers}{'transfer-encoding'} // '';
        my $cl = $r{headers}{'content-length'};
        if ($method eq 'HEAD' || $r{status} < 200
            || $r{status} == 204 || $r{status} == 304)
        {
            # no body
        } elsif ($te =~ /chunked/i) {
            my $body = '';
            my $p = $pos;
            while (1) {
                my $i = index($buf, "\r\n", $p);
                if ($i < 0) { return () unless $eof; $r{error} = 'truncated chunked body'; $pos = length $buf; last }
                my ($size) = substr($buf, $p, $i - $p) =~ /^\s*([0-9a-fA-F]+)/;
                unless (defined $size) {
                    $r{error} = 'bad chunk size'; $pos = length $buf; last;
                }
                $size = hex $size;
                $p = $i + 2;
                if ($size == 0) {
                    # trailers until an empty line
                    while (1) {
                        my $j = index($buf, "\r\n", $p);
                        if ($j < 0) { return () unless $eof; $r{error} = 'truncated trailers'; $p = length $buf; last }
                        my $tl = substr($buf, $p, $j - $p);
                        $p = $j + 2;
                        last if $tl eq '';
                        push @{ $r{trailers} }, $tl;
                    }
                    $pos = $p;
                    last;
                }
                if (length($buf) < $p + $size + 2) {
                    return () unless $eof;
                    $body .= substr($buf, $p);
                    $r{error} = 'truncated chunked body';
                    $pos = length $buf;
                    last;
                }
                $body .= substr($buf, $p, $size);
                $p += $size + 2;
            }
            $r{body} = $body;
        } elsif (defined $cl && $cl =~ /^\s*(\d+)/) {
            my $need = $1;
            if (length($buf) - $pos < $need) {
                return () unless $eof;
                $r{body} = substr($buf, $pos);
                $r{error} = 'truncated body';
                $pos = length $buf;
            } else {
                $r{body} = substr($buf, $pos, $need);
                $pos += $need;
            }
        } else {
            return () unless $eof;    # body delimited by connection close
            $r{body} = substr($buf, $pos);
            $pos = length $buf;
        }
        $r{raw} = substr($buf, 0, $pos);
        return (\%r, $pos);
    }
}

# connection object: { sock, buf, eof }
sub _conn_read_response {
    my ($conn, $method, $deadline) = @_;
    my $sel = IO::Select->new($conn->{sock});
    while (1) {
        my ($r, $used) = _parse_response($conn->{buf}, $method, $conn->{eof});
        if ($r) {
            substr($conn->{buf}, 0, $used, '');
            return $r;
        }
        my $left = $deadline - time;
        if ($left <= 0) {
            return { status => undef, headers => {}, header_list => [],
                     body => '', raw => $conn->{buf}, error => 'timeout' };
        }
        next unless $sel->can_read($left);
        my $n = sysread($conn->{sock}, $conn->{buf}, 65536,
                        length $conn->{buf});
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            $conn->{read_error} = "$!";
            $conn->{eof} = 1;      # e.g. ECONNRESET: parse what we have
        } elsif ($n == 0) {
            $conn->{eof} = 1;
        }
    }
}

sub _error_response {
    my ($err, $start) = @_;
    return { status => undef, headers => {}, header_list => [], body => '',
             raw => '', error => $err, elapsed => time - $start };
}

sub request {
    my ($self, %a) = @_;
    my $h = $self->start_request(%a);
    return $self->finish_request($h);
}

sub get {
    my ($self, $path, %headers) = @_;
    return $self->request(method => 'GET', path => $path,
                          headers => [ %headers ]);
}

sub raw_request {
    my ($self, $bytes, %a) = @_;
    my $h = $self->start_request(%a, raw => $bytes);
    return $self->finish_request($h);
}

sub start_request {
    my ($self, %a) = @_;
    my $start   = time;
    my $timeout = $a{timeout} // 10 * $SLOW;
    my ($req, $method);
    if (defined $a{raw}) {
        ($req, $method) = ($a{raw}, $a{method} // 'GET');
    } else {
        ($req, $method) = $self->_build_request(%a);
    }
    my $h = { start => $start, method => $method, timeout => $timeout };
    my $sock = _connect($a{port} // $self->port, $timeout);
    unless ($sock) {
        $h->{error} = "connect: $!";
        return $h;
    }
    $h->{conn} = { sock => $sock, buf => '', eof => 0 };
    unless (eval { _write_all($sock, $req, $start + $timeout); 1 }) {
        # the server may have answered and closed already: still read
        $h->{write_error} = $@;
    }
    return $h;
}

sub finish_request {
    my ($self, $h, %o) = @_;
    return _error_response($h->{error}, $h->{start}) if $h->{error};
    my $deadline = defined $o{timeout} ? time + $o{timeout}
                                       : $h->{start} + $h->{timeout};
    my $r = _conn_read_response($h->{conn}, $h->{method}, $deadline);
    $r->{elapsed} = time - $h->{start};
    $r->{read_error} = $h->{conn}{read_error} if $h->{conn}{read_error};
    close $h->{conn}{sock};
    delete $h->{conn};
    return $r;
}

sub keepalive {
    my ($self, $reqs, %o) = @_;
    my $port    = $o{port} // $self->port;
    my $timeout = $o{timeout} // 10 * $SLOW;
    my $sock = _connect($port, $timeout)
        or die "keepalive: connect to port $port: $!\n";
    my $conn = { sock => $sock, buf => '', eof => 0 };
    my @res;
    my $i = 0;
    for my $ra (@$reqs) {
        $i++;
        die "keepalive: server closed the connection before request $i\n"
            if $conn->{eof};
        my $start = time;
        my ($req, $method) = $self->_build_request(%$ra, _keepalive => 1);
        eval { _write_all($sock, $req, $start + $timeout); 1 }
            or die "keepalive: request $i: $@";
        my $r = _conn_read_response($conn, $method,
                                    $start + ($ra->{timeout} // $timeout));
        $r->{elapsed} = time - $start;
        die "keepalive: request $i failed: $r->{error}\n" if $r->{error};
        push @res, $r;
    }
    close $sock;
    return \@res;
}

sub concurrent {
    my ($self, $reqs, %o) = @_;
    my $timeout = $o{timeout} // 30 * $SLOW;
    my $start = time;
    my $deadline = $start + $timeout;
    my (@res, @st);

    for my $i (0 .. $#$reqs) {
        my %a = %{ $reqs->[$i] };
        my ($req, $method) = defined $a{raw}
            ? ($a{raw}, $a{method} // 'GET') : $self->_build_request(%a);
        my $sock = _connect($a{port} // $o{port} // $self->port, $timeout);
        unless ($sock) {
            $res[$i] = _error_response("connect: $!", $start);
            next;
        }
        $st[$i] = { conn => { sock => $sock, buf => '', eof => 0 },
                    method => $method, out => $req };
    }

    # write everything (non-blocking), then read until each is complete
    my %by_fd;
    for my $i (grep { $st[$_] } 0 .. $#st) {
        my $s = $st[$i]{conn}{sock};
        my $fl = fcntl($s, F_GETFL, 0);
        fcntl($s, F_SETFL, $fl | O_NONBLOCK);
        $by_fd{ fileno $s } = $i;
    }
    local $SIG{PIPE} = 'IGNORE';
    my $rsel = IO::Select->new;
    my $wsel = IO::Select->new(map { $st[$_]{conn}{sock} } values %by_fd);
    while ($rsel->count || $wsel->count) {
        my $left = $deadline - time;
        last if $left <= 0;
        my ($rr, $ww) = IO::Select->select($rsel, $wsel, undef,
                                           $left > 0.5 ? 0.5 : $left);
        for my $s (@{ $ww || [] }) {
            my $x = $st[ $by_fd{ fileno $s } ];
            my $n = syswrite($s, $x->{out});
            if (defined $n) {
                substr($x->{out}, 0, $n, '');
            } elsif ($! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR) {
                $x->{out} = '';
                $x->{write_error} = "$!";
            }
            if ($x->{out} eq '') { $wsel->remove($s); $rsel->add($s) }
        }
        for my $s (@{ $rr || [] }) {
            my $i = $by_fd{ fileno $s };
            my $x = $st[$i];
            my $n = sysread($s, $x->{conn}{buf}, 65536,
                            length $x->{conn}{buf});
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                $x->{conn}{read_error} = "$!";
                $x->{conn}{eof} = 1;
            } elsif ($n == 0) {
                $x->{conn}{eof} = 1;
            }
            my ($r) = _parse_response($x->{conn}{buf}, $x->{method},
                                      $x->{conn}{eof});
            next unless $r;
            $r->{elapsed} = time - $start;
            $r->{read_error} = $x->{conn}{read_error}
                if $x->{conn}{read_error};
            $res[$i] = $r;
            $rsel->remove($s);
            close $s;
        }
    }
    for my $i (0 .. $#$reqs) {
        next if $res[$i];
        my $x = $st[$i];
        $res[$i] = { status => undef, headers => {}, header_list => [],
                     body => '', raw => $x->{conn}{buf}, error => 'timeout',
                     elapsed => time - $start };
        close $x->{conn}{sock};
    }
    return \@res;
}

# ---------------------------------------------------------------------------
# load generator: client processes that keep requesting for a while
# ---------------------------------------------------------------------------

# start_load(%o) forks $o{clients} (default 8) processes that request
# until stop_load (or $o{duration} s, default 30, as a safety net).
# $o{request}->($client, $n) returns the request args (path, headers,
# port, ...) of request $n of client $client.  Clients with an odd
# number reuse keep-alive connections (up to $o{keepalive} requests,
# default 20), the others open a connection per request; each pauses
# $o{pause} s (default 0.01) between requests.  An idle keep-alive
# connection that the server has closed (e.g. a worker shutting down on
# reload) is replaced by a new one before the next request (the record
# says reopened => 1).  A request on a reused keep-alive connection that
# the server closed before sending any byte of a response (the race
# every HTTP client meets when a server closes an idle connection just
# as a request is sent) is sent again on a new connection, as clients
# do for idempotent requests (RFC 9112 section 9.3.1); the record says
# retried => 1.  A "tag" in
# the request args is copied to its record.
sub start_load {
    my ($self, %o) = @_;
    my $clients = $o{clients} // 8;
    my $req = $o{request} or die "start_load: request callback required\n";
    my $dir = "$self->{tmp}/load-" . ++$self->{load_seq};
    File::Path::make_path($dir);
    my $load = { dir => $dir, pids => [], start => time,
                 stop => "$dir/stop" };
    for my $c (1 .. $clients) {
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            my $ok = eval {
                $self->_load_client($c, $req, $load, %o);
                1;
            };
            print STDERR "load client $c: $@" unless $ok;
            POSIX::_exit($ok ? 0 : 1);
        }
        push @{ $load->{pids} }, $pid;
    }
    push @{ $self->{loads} }, $load;
    return $load;
}

sub _load_client {
    my ($self, $c, $req, $load, %o) = @_;
    require Storable;
    local $SIG{PIPE} = 'IGNORE';
    my $ka      = $c % 2 ? ($o{keepalive} // 20) : 0;
    my $pause   = $o{pause} // 0.01;
    my $timeout = $o{timeout} // 10 * $SLOW;
    my $end     = time + ($o{duration} // 30);
    my (@rec, $conn, $used);
    my $n = 0;
    while (time < $end && !-e $load->{stop}) {
        my %a = %{ $req->($c, ++$n) };
        my $port = $a{port} // $self->port;
        my $start = time;
        my ($r, $retried, $reopened);
        for my $try (1, 2) {
            # an idle keep-alive connection the server closed meanwhile
            # (readable: EOF) is not reused, as careful clients do
            if ($conn && IO::Select->new($conn->{sock})->can_read(0)) {
                close $conn->{sock};
                undef $conn;
                $reopened = 1;
            }
            my $reused = $conn && $used ? 1 : 0;
            unless ($conn) {
                my $s = _connect($port, $timeout);
                unless ($s) {
                    $r = { error => "connect: $!" };
                    last;
                }
                $conn = { sock => $s, buf => '', eof => 0 };
                $used = 0;
            }
            my ($bytes, $method) = $self->_build_request(%a,
                $ka ? (_keepalive => 1) : ());
            my $wok = eval { _write_all($conn->{sock}, $bytes,
                                        $start + $timeout); 1 };
            $r = _conn_read_response($conn, $method, $start + $timeout);
            $r->{error} //= "write: $@" if !$wok && !defined $r->{status};
            $r->{read_error} = $conn->{read_error} if $conn->{read_error};
            $used++;
            my $close = !$ka || $conn->{eof} || $used >= $ka
                || defined $r->{error}
                || ($r->{headers}{connection} // '') =~ /close/i;
            if ($close) {
                close $conn->{sock};
                undef $conn;
            }
            # closed before any response byte on a reused connection
            if ($reused && !defined $r->{status} && $r->{raw} eq ''
                && $try == 1)
            {
                $retried = 1;
                $start = time;
                next;
            }
            last;
        }
        push @rec, {
            client  => $c,
            n       => $n,
            path    => $a{path},
            tag     => $a{tag},
            start   => $start,
            elapsed => time - $start,
            end     => time,
            status  => $r->{status},
            error   => $r->{error} // $r->{read_error},
            body    => $r->{body} // '',
            headers => $r->{headers} // {},
            retried => $retried ? 1 : 0,
            reopened => $reopened ? 1 : 0,
            keepalive => $ka ? 1 : 0,
        };
        sleep $pause if $pause > 0;
    }
    close $conn->{sock} if $conn;
    Storable::nstore(\@rec, "$load->{dir}/client-$c.sto");
}

# ends the load (or waits for its duration if $o{wait}), returns the
# records of every client ordered by start time: hashes with client, n,
# path, tag, start, end, elapsed, status, error, body, headers, retried,
# reopened, keepalive.  Dies if a client failed.
sub stop_load {
    my ($self, $load, %o) = @_;
    require Storable;
    unless ($o{wait}) {
        open my $fh, '>', $load->{stop} or die "stop_load: $load->{stop}: $!";
        close $fh;
    }
    my @all;
    my @failed;
    for my $i (0 .. $#{ $load->{pids} }) {
        my $pid = $load->{pids}[$i];
        my $st = _wait_child($pid, ($o{timeout} // 60) * $SLOW);
        unless (defined $st) {
            kill 'KILL', $pid;
            _wait_child($pid, 5);
            push @failed, "client " . ($i + 1) . " did not finish";
            next;
        }
        push @failed, "client " . ($i + 1) . " exited with $st" if $st;
        my $file = "$load->{dir}/client-" . ($i + 1) . ".sto";
        push @all, @{ Storable::retrieve($file) } if -f $file;
    }
    $self->{loads} = [ grep { $_ != $load } @{ $self->{loads} || [] } ];
    die "stop_load: " . join(', ', @failed) . "\n" if @failed;
    return [ sort { $a->{start} <=> $b->{start} } @all ];
}

1;
