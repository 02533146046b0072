//! Edge cases built in-process with the builder: empty, one currency,
//! nothing settles, everything settles, gridlock, batch splitting, and the
//! checker catching each kind of invalid solution.

use settle_solver::{
    check, naive, solve, Decimal, Instance, InstanceBuilder, InstanceError, SolutionFile,
    SolveOptions,
};

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// USD/EUR market with RTGS and T2 windows; returns (builder, usd, eur, rtgs, t2).
fn market(max_batch_size: u32) -> (InstanceBuilder, u32, u32, u32, u32) {
    let mut b = InstanceBuilder::new(max_batch_size, 5.0, 0.15);
    let usd = b.currency("USD", 2, dec("1.0"));
    let eur = b.currency("EUR", 2, dec("1.08"));
    b.pair(usd, eur, 2.5);
    let rtgs = b.window("RTGS", 50.0);
    let t2 = b.window("T2", 1.0);
    (b, usd, eur, rtgs, t2)
}

fn valid(inst: &Instance, file: &SolutionFile) -> bool {
    let r = check(inst, file);
    assert!(r.valid, "{:?}", r.errors);
    r.valid
}

#[test]
fn empty_instance_costs_nothing() {
    let (b, ..) = market(10);
    let inst = b.build().unwrap();
    let sol = solve(&inst, &SolveOptions::default());
    assert_eq!(sol.cost.total, 0.0);
    assert_eq!(sol.savings_pct(), 0.0);
    assert!(valid(&inst, &sol.to_file(&inst)));
}

#[test]
fn one_currency_needs_no_pairs_and_no_fx() {
    let mut b = InstanceBuilder::new(10, 5.0, 0.15);
    let usd = b.currency("USD", 2, dec("1"));
    let w = b.window("RTGS", 50.0);
    let a = b.participant("a", dec("1e9"), &[(usd, 1_000_000)]);
    let c = b.participant("c", dec("1e9"), &[]);
    b.transaction("t1", a, c, 500_000, usd, usd, w);
    b.transaction("t2", a, c, 400_000, usd, usd, w);
    let inst = b.build().unwrap();
    let sol = solve(&inst, &SolveOptions::default());
    assert_eq!(sol.settled_count(), 2);
    assert_eq!(sol.cost.fx, 0.0);
    assert!(sol.fx_trades.is_empty());
    // One consolidated wire instead of two plain ones.
    assert!((sol.cost.wire - 4.25).abs() < 1e-9);
    assert!((sol.naive_cost.wire - 10.0).abs() < 1e-9);
    assert!(valid(&inst, &sol.to_file(&inst)));
}

#[test]
fn nothing_can_settle_without_liquidity() {
    let (mut b, usd, eur, rtgs, _) = market(10);
    let a = b.participant("a", dec("1e9"), &[]);
    let c = b.participant("c", dec("1e9"), &[]);
    b.transaction("t1", a, c, 100_000, usd, eur, rtgs);
    b.transaction("t2", a, c, 200_000, usd, usd, rtgs);
    let inst = b.build().unwrap();
    let sol = solve(&inst, &SolveOptions::default());
    assert_eq!(sol.settled_count(), 0);
    assert!(sol.batches.is_empty() && sol.fx_trades.is_empty());
    assert!((sol.cost.deferral - (1000.0 + 2000.0) * 0.005).abs() < 1e-9);
    assert!(valid(&inst, &sol.to_file(&inst)));
}

#[test]
fn everything_settles_when_liquidity_is_ample() {
    let (mut b, usd, eur, rtgs, _) = market(1000);
    let a = b.participant(
        "a",
        dec("1e12"),
        &[(usd, 10_000_000_000), (eur, 10_000_000_000)],
    );
    let c = b.participant(
        "c",
        dec("1e12"),
        &[(usd, 10_000_000_000), (eur, 10_000_000_000)],
    );
    for i in 0..50 {
        let (d, k) = if i % 2 == 0 { (a, c) } else { (c, a) };
        let (s, r) = if i % 3 == 0 { (usd, eur) } else { (eur, usd) };
        b.transaction(&format!("t{i}"), d, k, 1_000_000 + i * 1000, s, r, rtgs);
    }
    let inst = b.build().unwrap();
    let sol = solve(&inst, &SolveOptions::default());
    assert_eq!(sol.settled_count(), 50);
    assert_eq!(sol.cost.deferral, 0.0);
    // Netting: the FX bill is far below converting each one alone.
    assert!(
        sol.cost.fx < sol.naive_cost.fx * 0.5,
        "{} vs {}",
        sol.cost.fx,
        sol.naive_cost.fx
    );
    assert!(valid(&inst, &sol.to_file(&inst)));
}

#[test]
fn gridlock_cycle_settles_together() {
    // a owes b, b owes c, c owes a, each 1,000 USD; nobody holds any USD.
    // No single payment can settle alone; all three together net to zero.
    let mut b = InstanceBuilder::new(10, 5.0, 0.15);
    let usd = b.currency("USD", 2, dec("1"));
    let w = b.window("RTGS", 50.0);
    let pa = b.participant("a", dec("1e9"), &[]);
    let pb = b.participant("b", dec("1e9"), &[]);
    let pc = b.participant("c", dec("1e9"), &[]);
    b.transaction("ab", pa, pb, 100_000, usd, usd, w);
    b.transaction("bc", pb, pc, 100_000, usd, usd, w);
    b.transaction("ca", pc, pa, 100_000, usd, usd, w);
    let inst = b.build().unwrap();
    assert_eq!(naive(&inst).settled_count(), 0, "no single payment fits");
    let heuristic_only = SolveOptions {
        exact_transactions_max: 0,
        ..SolveOptions::default()
    };
    let sol = solve(&inst, &heuristic_only);
    assert_eq!(sol.settled_count(), 3);
    assert!(valid(&inst, &sol.to_file(&inst)));
}

#[test]
fn a_group_larger_than_max_batch_size_splits() {
    let (mut b, usd, _, rtgs, _) = market(2);
    let a = b.participant("a", dec("1e9"), &[(usd, 1_000_000_000)]);
    let c = b.participant("c", dec("1e9"), &[]);
    for i in 0..5 {
        b.transaction(&format!("t{i}"), a, c, 100_000, usd, usd, rtgs);
    }
    let inst = b.build().unwrap();
    let sol = solve(&inst, &SolveOptions::default());
    assert_eq!(sol.settled_count(), 5);
    let sizes: Vec<usize> = sol.batches.iter().map(|b| b.transactions.len()).collect();
    assert_eq!(sizes, vec![2, 2, 1]);
    assert!((sol.cost.wire - (2.0 * 4.25 + 5.0)).abs() < 1e-9);
    assert!(valid(&inst, &sol.to_file(&inst)));
}

#[test]
fn counterparty_limit_binds() {
    let (mut b, usd, _, rtgs, _) = market(10);
    let a = b.participant("a", dec("1e9"), &[(usd, 1_000_000_000)]);
    let c = b.participant("c", dec("1500"), &[]);
    b.transaction("small", a, c, 50_000, usd, usd, rtgs);
    b.transaction("big", a, c, 140_000, usd, usd, rtgs);
    b.transaction("mid", a, c, 100_000, usd, usd, rtgs);
    let inst = b.build().unwrap();
    let sol = solve(&inst, &SolveOptions::default());
    // A 1,500 USD limit: big + anything breaks it. small + mid (exactly
    // 1,500) defers 1,400 USD worth; big alone would defer 1,500.
    assert_eq!(sol.settled, vec![true, false, true]);
    assert!(valid(&inst, &sol.to_file(&inst)));
}

#[test]
fn builder_validates_like_json() {
    let (mut b, usd, _, rtgs, _) = market(10);
    let a = b.participant("a", dec("1e9"), &[]);
    b.transaction("t", a, 7, 100, usd, usd, rtgs);
    match b.build() {
        Err(InstanceError::Invalid { field, .. }) => assert_eq!(field, "transactions[0].creditor"),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn checker_catches_each_kind_of_invalid_solution() {
    let (mut b, usd, eur, rtgs, _) = market(1);
    let a = b.participant("a", dec("1e9"), &[(usd, 1_000_000)]);
    let c = b.participant("c", dec("1e9"), &[]);
    b.transaction("t1", a, c, 1_000_000, usd, eur, rtgs);
    b.transaction("t2", a, c, 1_000_000, usd, eur, rtgs);
    let inst = b.build().unwrap();
    let good = solve(&inst, &SolveOptions::default()).to_file(&inst);
    assert!(valid(&inst, &good));
    assert_eq!(good.settled.len(), 1);

    let errors = |f: &SolutionFile| check(&inst, f).errors.join("; ");
    // Both settled: a's USD goes negative.
    let mut both = good.clone();
    both.settled = vec!["t1".into(), "t2".into()];
    both.deferred.clear();
    assert!(errors(&both).contains("negative"), "{}", errors(&both));
    // A transaction listed twice.
    let mut twice = good.clone();
    twice.deferred.push(twice.settled[0].clone());
    assert!(
        errors(&twice).contains("more than once"),
        "{}",
        errors(&twice)
    );
    // Batch over max_batch_size (1).
    let mut fat = good.clone();
    fat.batches[0].transactions.push("t2".into());
    assert!(errors(&fat).contains("max_batch_size"), "{}", errors(&fat));
    // Wrong currency in the batch.
    let mut wrong = good.clone();
    wrong.batches[0].currency = "USD".into();
    assert!(
        errors(&wrong).contains("pays c in EUR"),
        "{}",
        errors(&wrong)
    );
    // FX not covered.
    let mut uncovered = good.clone();
    uncovered.fx_trades.clear();
    assert!(
        errors(&uncovered).contains("uncovered"),
        "{}",
        errors(&uncovered)
    );
    // A trade on a pair that is not tradable.
    let mut bogus = good.clone();
    bogus.fx_trades[0].to = "GBP".into();
    assert!(
        errors(&bogus).contains("unknown currency"),
        "{}",
        errors(&bogus)
    );
    // Claimed cost off by more than 0.02.
    let mut cheap = good.clone();
    cheap.cost.as_mut().unwrap().total -= 0.05;
    assert!(errors(&cheap).contains("cost.total"), "{}", errors(&cheap));
}

#[test]
fn self_payments_and_a_zero_budget_still_give_valid_answers() {
    let (mut b, usd, eur, rtgs, t2) = market(1);
    let a = b.participant("a", dec("1e6"), &[(usd, 500_000)]);
    let c = b.participant("c", dec("2000"), &[(eur, 10_000)]);
    // Paying oneself across currencies, and within one.
    b.transaction("self_fx", a, a, 400_000, usd, eur, rtgs);
    b.transaction("self_same", c, c, 5_000, eur, eur, t2);
    b.transaction("ac", a, c, 300_000, usd, eur, rtgs);
    b.transaction("ca", c, a, 900_000, eur, usd, rtgs);
    let inst = b.build().unwrap();
    for budget_ms in [0, 1000] {
        let opts = SolveOptions {
            time_budget: std::time::Duration::from_millis(budget_ms),
            exact_transactions_max: 0,
            ..SolveOptions::default()
        };
        let sol = solve(&inst, &opts);
        assert!(valid(&inst, &sol.to_file(&inst)));
        assert!(sol.cost.total <= sol.naive_cost.total + 1e-9);
    }
    let exact = settle_solver::exact(&inst, &settle_solver::ExactLimits::default()).unwrap();
    let sol = solve(&inst, &SolveOptions::default());
    assert!((sol.cost.total - exact.cost.total).abs() < 1e-6);
}
