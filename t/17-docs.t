#!/usr/bin/perl
# The documentation against the code, without nginx or network:
#
# - every directive of the module's command tables (the ngx_command_t
#   arrays of ngx_loyalty_module/*.c) has a "### name" section under
#   "## Directives" in docs/ngx_http_loyalty_module.md, with **Syntax:**
#   (starting with the name), **Default:** and **Context:** lines, the
#   context matching the directive's NGX_HTTP_*_CONF flags, and an entry
#   in the table of contents; and no section or entry names a directive
#   that does not exist;
# - every variable of the ngx_http_variable_t arrays is a "- `$name`"
#   item of "## Embedded Variables" (a NGX_HTTP_VAR_PREFIX variable such
#   as "loyalty_ab_" as "- `$loyalty_ab_`*name*"), and no item names a
#   variable that does not exist;
# - docs/ holds the other required documents (quick start, Redis schema,
#   cookie signing with recipes, A/B testing, operations, metrics,
#   benchmarks), each linked from README.md;
# - every relative link of docs/*.md and README.md points to an existing
#   file and, with a #fragment into a Markdown file, to an existing
#   heading (GitHub anchors).
#
# Each failure says which names are missing where.

use strict;
use warnings;
use FindBin;
use File::Basename qw(dirname);
use File::Spec;
use Test::More;

my $root = File::Spec->rel2abs("$FindBin::Bin/..");
my $ref  = 'docs/ngx_http_loyalty_module.md';

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or die "$path: $!";
    local $/;
    return scalar <$fh>;
}

# the text of each "type name[] = { ... };" array of the C sources
sub c_arrays {
    my ($type, $text) = @_;
    my @arrays;

    while ($text =~ /\b\Q$type\E\s+(\w+)\s*\[\s*\]\s*=\s*\{/g) {
        my ($name, $start, $depth, $i) = ($1, pos($text), 1, pos($text));

        while ($depth > 0 && $i < length $text) {
            my $c = substr $text, $i++, 1;
            $depth++ if $c eq '{';
            $depth-- if $c eq '}';
        }

        push @arrays, [$name, substr($text, $start, $i - 1 - $start)];
    }

    return @arrays;
}

# the entries "{ ngx_string("name"), ... }" of an array: [name, entry text]
sub c_entries {
    my ($body) = @_;
    my @parts = split /(?=\{\s*ngx_string\s*\(")/, $body;
    my @entries;

    for my $part (@parts) {
        next unless $part =~ /^\{\s*ngx_string\s*\("([^"]*)"\)/;
        push @entries, [$1, $part];
    }

    return @entries;
}

# ---- the code ---------------------------------------------------------

my (%directives, %variables);    # name => contexts / name => 1

for my $file (sort glob "$root/ngx_loyalty_module/*.c") {
    my $text = slurp($file);
    # comments out, string and character literals kept
    $text =~ s{ ( "(?:\\.|[^"\\\n])*" | '(?:\\.|[^'\\\n])*' )
              | /\*.*?\*/
              | //[^\n]* }{defined $1 ? $1 : ' '}gsex;

    for my $array (c_arrays('ngx_command_t', $text)) {
        for my $entry (c_entries($array->[1])) {
            my ($name, $body) = @$entry;
            my @ctx;
            push @ctx, 'http'     if $body =~ /\bNGX_HTTP_MAIN_CONF\b/;
            push @ctx, 'server'   if $body =~ /\bNGX_HTTP_SRV_CONF\b/;
            push @ctx, 'location' if $body =~ /\bNGX_HTTP_LOC_CONF\b/;
            $directives{$name} = join ', ', @ctx;
        }
    }

    for my $array (c_arrays('ngx_http_variable_t', $text)) {
        for my $entry (c_entries($array->[1])) {
            my ($name, $body) = @$entry;
            $name .= '*' if $body =~ /\bNGX_HTTP_VAR_PREFIX\b/;
            $variables{$name} = 1;
        }
    }
}

cmp_ok(scalar keys %directives, '>=', 20,
       'the command tables name ' . scalar(keys %directives)
       . ' directives')
    or diag 'no ngx_command_t array parsed in ngx_loyalty_module/*.c';
cmp_ok(scalar keys %variables, '>=', 10,
       'the variable tables name ' . scalar(keys %variables) . ' variables')
    or diag 'no ngx_http_variable_t array parsed in ngx_loyalty_module/*.c';

# ---- the reference ----------------------------------------------------

my $doc = slurp("$root/$ref");

# "## title" => text, outside fenced code
my (%h2, @h2_order, $current);
{
    my $fenced = 0;
    for my $line (split /\n/, $doc) {
        $fenced = !$fenced if $line =~ /^\s*```/;
        if (!$fenced && $line =~ /^## (.+?)\s*$/) {
            $current = $1;
            push @h2_order, $current;
            $h2{$current} = '';
            next;
        }
        $h2{$current} .= "$line\n" if defined $current;
    }
}

ok(exists $h2{'Directives'}, "$ref has a \"## Directives\" section");
ok(exists $h2{'Embedded Variables'},
   "$ref has a \"## Embedded Variables\" section");

# directive sections: name => text
my (%sections, @section_order);
{
    my $name;
    for my $line (split /\n/, $h2{'Directives'} // '') {
        if ($line =~ /^### (.+?)\s*$/) {
            $name = $1;
            push @section_order, $name;
            diag "$ref: \"### $name\" appears twice"
                if exists $sections{$name};
            $sections{$name} = '';
            next;
        }
        $sections{$name} .= "$line\n" if defined $name;
    }
}

my @undocumented = grep { !exists $sections{$_} } sort keys %directives;
my @unknown      = grep { !exists $directives{$_} } @section_order;

ok(!@undocumented, 'every directive of the command tables has a section')
    or diag "directives without a \"### name\" section under \"## Directives\""
          . " in $ref: @undocumented";
ok(!@unknown, 'every directive section names a directive of the code')
    or diag "sections in $ref for directives that are in no ngx_command_t"
          . " array: @unknown";

for my $name (sort keys %sections) {
    my $text = $sections{$name};
    my ($syntax)  = $text =~ /^\*\*Syntax:\*\*[ \t]*(.*)$/m;
    my ($default) = $text =~ /^\*\*Default:\*\*[ \t]*(.*)$/m;
    my ($context) = $text =~ /^\*\*Context:\*\*[ \t]*(.*)$/m;

    ok(defined $syntax && defined $default && defined $context,
       "$name: Syntax, Default and Context lines")
        or diag "$ref, ### $name lacks:"
              . join '', map { " **$_:**" }
                (defined $syntax ? () : 'Syntax'),
                (defined $default ? () : 'Default'),
                (defined $context ? () : 'Context');

    ok(defined $syntax && $syntax =~ /^`\Q$name\E`(?:[ ;]|$)/,
       "$name: the Syntax line starts with the name")
        or diag "$ref, ### $name: **Syntax:** " . ($syntax // '(none)');

    ok(defined $default && $default =~ /\S/, "$name: the Default is given")
        or diag "$ref, ### $name: empty **Default:**";

    next unless exists $directives{$name};

    my $documented = join ', ',
        map { /^`(.*)`$/ ? $1 : $_ } split /,\s*/, $context // '';
    $documented =~ s/\s+$//;

    is($documented, $directives{$name},
       "$name: the Context matches the command table")
        or diag "$ref, ### $name: **Context:** says \"$documented\", the"
              . " flags in the code give \"$directives{$name}\"";
}

# the table of contents: the list before the first "##" heading
{
    my ($toc) = $doc =~ /\A(.*?)^## /ms;
    my (%toc, @toc_unknown);
    for my $line (split /\n/, $toc // '') {
        next unless $line =~ /^\s+- \[`?([^\]`]+)`?\]\(#([^)]+)\)/;
        my ($text, $anchor) = ($1, $2);
        if ($text =~ /^loyalty/) {
            $toc{$text} = $anchor;
            push @toc_unknown, $text unless exists $directives{$text};
        }
    }

    my @missing = grep { !exists $toc{$_} } sort keys %directives;
    ok(!@missing, 'the table of contents lists every directive')
        or diag "directives missing from the table of contents of $ref:"
              . " @missing";
    ok(!@toc_unknown, 'the table of contents names no unknown directive')
        or diag "table of contents entries of $ref that are no directive:"
              . " @toc_unknown";

    my @wrong = grep { $toc{$_} ne $_ } grep { exists $toc{$_} }
                sort keys %directives;
    ok(!@wrong, 'the table of contents links each directive to its section')
        or diag "table of contents entries of $ref with another anchor:"
              . join '', map { " $_ (#$toc{$_})" } @wrong;
}

# variables: "- `$name`" items at the start of a line
{
    my (%documented, @order);
    for my $line (split /\n/, $h2{'Embedded Variables'} // '') {
        next unless $line =~ /^- `\$([A-Za-z0-9_]+)`(\*[^*]+\*)?/;
        my $name = $1 . (defined $2 ? '*' : '');
        push @order, $name;
        $documented{$name} = 1;
    }

    my @missing = grep { !$documented{$_} } sort keys %variables;
    my @extra   = grep { !$variables{$_} } @order;
    # "loyalty_ab_*" is shown as the reference writes it: $loyalty_ab_*name*
    my $show = sub {
        map { /^(.*)\*$/ ? "\$$1*name*" : "\$$_" } @_;
    };

    ok(!@missing, 'every variable of the code is documented')
        or diag "variables missing from \"## Embedded Variables\" in $ref"
              . " (as \"- `\$name`\" items): " . join ' ', $show->(@missing);
    ok(!@extra, 'every documented variable exists in the code')
        or diag "\"## Embedded Variables\" in $ref documents variables that"
              . " are in no ngx_http_variable_t array: "
              . join ' ', $show->(@extra);
}

# any $loyalty_... named anywhere in the documentation exists (an instance
# of a prefix variable, such as $loyalty_ab_badge, counts)
{
    my @prefixes = map { substr $_, 0, -1 } grep { /\*$/ } keys %variables;
    my @bad;

    for my $file ('README.md',
                  map { s{^\Q$root\E/}{}r } sort glob "$root/docs/*.md")
    {
        my %seen;
        my $text = slurp("$root/$file");
        while ($text =~ /\$(loyalty_[A-Za-z0-9_]+)/g) {
            my $name = $1;
            next if $variables{$name} || $seen{$name}++;
            next if grep { index($name, $_) == 0 } @prefixes;
            push @bad, "$file: \$$name";
        }
    }

    ok(!@bad, 'the documentation names no variable that does not exist')
        or diag "unknown variables: @bad";
}

# ---- the other documents ----------------------------------------------

my %required = (
    'docs/quickstart.md'     => [qr/make demo/, qr/loyalty-cookie sign/,
                                 qr/redis-cli/, qr/curl/, qr/load_module/],
    'docs/redis-schema.md'   => [qr/^## Customer record/m, qr/HSET/],
    'docs/cookie-signing.md' => [qr/^## Recipes/m, qr/recipes\/sign\.py/,
                                 qr/recipes\/sign\.php/,
                                 qr/recipes\/sign\.js/],
    'docs/ab-testing.md'     => [qr/loyalty_ab\b/, qr/loyalty_ab_report/],
    'docs/operations.md'     => [qr/^## Failure modes/m, qr/^## Tuning/m,
                                 qr/^## Monitoring/m, qr/metrics\.md/],
    'docs/metrics.md'        => [qr/nginx_loyalty_/, qr/loyalty_metrics/],
    'docs/benchmarks.md'     => [qr/make bench/],
    'docs/recipes/sign.py'   => [qr/def sign\(/],
    'docs/recipes/sign.php'  => [qr/function sign\(/],
    'docs/recipes/sign.js'   => [qr/function sign\(/],
);

my $readme = slurp("$root/README.md");

for my $file (sort keys %required) {
    if (!ok(-f "$root/$file" && -s _, "$file exists")) {
        diag "required document missing: $file";
        next;
    }

    my $text = slurp("$root/$file");
    my @absent = grep { $text !~ $_ } @{ $required{$file} };
    ok(!@absent, "$file covers what it must")
        or diag "$file lacks: " . join ', ', map { "/$_/" } @absent;
}

# README.md's documentation list names every document of docs/
for my $file (map { s{^\Q$root\E/}{}r } sort glob "$root/docs/*.md") {
    ok($readme =~ /\]\(\Q$file\E(?:#[^)]*)?\)/, "README.md links $file")
        or diag "README.md has no [...]($file) link";
}

# ---- links ------------------------------------------------------------

# GitHub's anchors of a Markdown file's headings
my %anchors;
sub anchors {
    my ($path) = @_;
    return $anchors{$path} if $anchors{$path};

    my (%set, %seen, $fenced);
    for my $line (split /\n/, slurp($path)) {
        $fenced = !$fenced if $line =~ /^\s*```/;
        next if $fenced || $line !~ /^#{1,6}\s+(.*?)\s*#*\s*$/;

        my $id = lc $1;
        $id =~ s/<[^>]*>//g;
        $id =~ s/[^\w\- ]//g;
        $id =~ tr/ /-/;
        my $n = $seen{$id}++;
        $set{$n ? "$id-$n" : $id} = 1;
    }

    return $anchors{$path} = \%set;
}

# [text](target) links of a Markdown file, outside code: [line, target]
sub links {
    my ($path) = @_;
    my (@links, $fenced, $n);

    for my $line (split /\n/, slurp($path)) {
        $n++;
        $fenced = !$fenced if $line =~ /^\s*```/;
        next if $fenced;
        (my $text = $line) =~ s/`[^`]*`/code/g;
        while ($text =~ /\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g) {
            push @links, [$n, $1];
        }
    }

    return @links;
}

my $checked = 0;

for my $file ('README.md',
              map { s{^\Q$root\E/}{}r } sort glob "$root/docs/*.md")
{
    my @bad;

    for my $link (links("$root/$file")) {
        my ($line, $target) = @$link;
        next if $target =~ m{^[a-z][a-z0-9+.-]*:}i;    # http:, mailto: ...

        my ($path, $fragment) = $target =~ /^([^#]*)(?:#(.*))?$/;
        my $dest = $path eq ''
                 ? "$root/$file"
                 : File::Spec->catfile(dirname("$root/$file"), $path);
        $checked++;

        if (!-e $dest) {
            push @bad, "$file:$line: $target: no such file";
            next;
        }

        next unless defined $fragment && $dest =~ /\.md$/ && -f $dest;

        push @bad, "$file:$line: $target: no heading with that anchor"
            unless anchors($dest)->{$fragment};
    }

    ok(!@bad, "$file: relative links resolve")
        or diag join "\n", @bad;
}

cmp_ok($checked, '>=', 50, "$checked relative links checked");

done_testing();
