//! MPM directive parsing and validation, checked with `apache2 -t`.

mod common;

use common::*;

/// Deliberately stricter than stock: stock event parses these with atoi(),
/// so "abc" silently becomes 0 and is then "corrected" with a warning, and
/// its AsyncRequestWorkerFactor error ("error parsing value") does not name
/// the directive. This test is expected to fail against the stock module.
#[test]
fn strict_non_numeric_mpm_values_are_rejected() {
    let cases = [
        "ThreadsPerChild abc",
        "StartServers abc",
        "ServerLimit abc",
        "ThreadLimit abc",
        "MinSpareThreads abc",
        "MaxSpareThreads abc",
        "MaxRequestWorkers abc",
        "MaxClients abc",
        "AsyncRequestWorkerFactor x",
    ];
    let mut accepted = Vec::new();
    for directive_line in cases {
        let name = directive_line.split(' ').next().unwrap();
        let check = server().directives(directive_line).config_test();
        if check.success || !check.output.contains(name) {
            accepted.push(format!(
                "`{directive_line}`: {}, output:\n{}",
                if check.success {
                    "accepted"
                } else {
                    "rejected without naming the directive"
                },
                check.output.trim_end()
            ));
        }
    }
    assert!(
        accepted.is_empty(),
        "non-numeric values not rejected properly:\n{}",
        accepted.join("\n")
    );
}

/// Out-of-range values are corrected with the same warnings as stock event.
#[test]
fn out_of_range_values_are_corrected_with_stock_warnings() {
    let cases = [
        (
            "ThreadsPerChild 100",
            "WARNING: ThreadsPerChild of 100 exceeds ThreadLimit of 64 threads, decreasing to 64. \
             To increase, please see the ThreadLimit directive.",
        ),
        (
            "ThreadsPerChild 0",
            "WARNING: ThreadsPerChild of 0 not allowed, increasing to 1.",
        ),
        (
            "ServerLimit 30000",
            "WARNING: ServerLimit of 30000 exceeds compile-time limit of 20000 servers, decreasing to 20000.",
        ),
        (
            "ServerLimit 0",
            "WARNING: ServerLimit of 0 not allowed, increasing to 1.",
        ),
        (
            "ThreadLimit 200000",
            "WARNING: ThreadLimit of 200000 exceeds compile-time limit of 100000 threads, decreasing to 100000.",
        ),
        (
            "ThreadLimit 0",
            "WARNING: ThreadLimit of 0 not allowed, increasing to 1.",
        ),
        (
            "ThreadsPerChild 25\nMaxRequestWorkers 30",
            "WARNING: MaxRequestWorkers of 30 is not an integer multiple of ThreadsPerChild of 25, \
             decreasing to nearest multiple 25, for a maximum of 1 servers.",
        ),
        (
            "MaxRequestWorkers 10",
            "WARNING: MaxRequestWorkers of 10 is less than ThreadsPerChild of 25, increasing to 25. \
             MaxRequestWorkers must be at least as large as the number of threads in a single server.",
        ),
        (
            "MaxRequestWorkers 5000",
            "WARNING: MaxRequestWorkers of 5000 would require 200 servers and would exceed ServerLimit of 16, \
             decreasing to 400. To increase, please see the ServerLimit directive.",
        ),
        (
            "StartServers 0",
            "WARNING: StartServers of 0 not allowed, increasing to 1.",
        ),
        (
            "MinSpareThreads 0",
            "WARNING: MinSpareThreads of 0 not allowed, increasing to 1 to avoid almost certain server failure. \
             Please read the documentation.",
        ),
    ];
    for (directives, warning) in cases {
        let check = server().directives(directives).config_test();
        assert!(
            check.success,
            "`{directives}` must only warn, output:\n{}",
            check.output
        );
        assert!(
            check.output.contains(warning),
            "`{directives}`: expected {warning:?} in:\n{}",
            check.output
        );
        assert!(
            check.output.contains("Syntax OK"),
            "`{directives}`, output:\n{}",
            check.output
        );
    }
}

/// Sanity check of the generated configuration itself: no MPM warning at all.
#[test]
fn default_configuration_is_clean() {
    let check = server().config_test();
    assert!(check.success, "output:\n{}", check.output);
    assert_eq!(check.output.trim(), "Syntax OK");
}
