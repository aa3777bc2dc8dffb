use rust_decimal_macros::dec;

use super::*;

fn line(
    sku: &str,
    category: Option<&str>,
    quantity: i64,
    unit_price: Decimal,
) -> PurchaseLineInput {
    PurchaseLineInput {
        sku: sku.to_owned(),
        category: category.map(str::to_owned),
        quantity,
        unit_price,
    }
}

fn message(err: DomainError) -> String {
    match err {
        DomainError::Validation(message) => message,
        other => panic!("expected VALIDATION, got {other:?}"),
    }
}

fn money(minor: i64) -> Money {
    Money::from_minor(minor)
}

#[test]
fn lines_must_add_up_to_the_amount() {
    let lines = [
        line("espresso", Some("coffee"), 2, dec!(10.00)),
        line("green", Some("tea"), 1, dec!(22.00)),
    ];
    assert_eq!(
        message(validate_lines(&lines, money(5000)).unwrap_err()),
        "lines: the lines add up to 42.00, not amount 50.00"
    );
    let valid = validate_lines(&lines, money(4200)).unwrap();
    assert_eq!(valid.len(), 2);
    assert_eq!(valid[0].unit_price, money(1000));
    assert_eq!(valid[1].category.as_deref(), Some("tea"));
    assert_eq!(valid[0].to_line().value(), money(2000));
}

#[test]
fn each_bad_field_is_refused_with_its_path() {
    let good = line("a", None, 1, dec!(1));
    let cases = [
        (
            line("a", None, 0, dec!(1)),
            "lines[1].quantity: must be at least 1",
        ),
        (
            line("a", None, MAX_LINE_QUANTITY + 1, dec!(1)),
            "lines[1].quantity: must be at most 1000000",
        ),
        (
            line("", None, 1, dec!(1)),
            "lines[1].sku: must be 1 to 64 characters",
        ),
        (
            line(&"é".repeat(65), None, 1, dec!(1)),
            "lines[1].sku: must be 1 to 64 characters",
        ),
        (
            line("a", Some(""), 1, dec!(1)),
            "lines[1].category: must be 1 to 64 characters",
        ),
        (
            line("a", None, 1, dec!(-0.01)),
            "lines[1].unitPrice: must not be negative",
        ),
        (
            line("a", None, 1, dec!(0.001)),
            "lines[1].unitPrice: must have at most two fraction digits",
        ),
    ];
    for (bad, expected) in cases {
        let err = validate_lines(&[good.clone(), bad], money(200)).unwrap_err();
        assert_eq!(message(err), expected);
    }
    // 64 characters (not bytes) are fine.
    let long = line(&"é".repeat(64), Some(&"ü".repeat(64)), 1, dec!(1));
    assert!(validate_lines(&[long], money(100)).is_ok());
    // A free line is fine.
    let free = [good.clone(), line("sample", None, 3, dec!(0))];
    assert!(validate_lines(&free, money(100)).is_ok());
}

#[test]
fn line_counts_are_bounded() {
    assert_eq!(
        message(validate_lines(&[], money(100)).unwrap_err()),
        "lines: must not be empty (leave it out for an order without lines)"
    );
    let many = vec![line("a", None, 1, dec!(0.01)); MAX_LINES + 1];
    assert_eq!(
        message(validate_lines(&many, money(201)).unwrap_err()),
        "lines: at most 200 lines"
    );
    let most = vec![line("a", None, 1, dec!(0.01)); MAX_LINES];
    assert_eq!(validate_lines(&most, money(200)).unwrap().len(), MAX_LINES);
}

#[test]
fn refund_lines_are_checked_for_shape_then_against_the_order() {
    let part = |line_number, quantity| RefundLineInput {
        line_number,
        quantity,
    };
    assert_eq!(
        message(validate_refund_lines(&[part(1, 1), part(0, 1)]).unwrap_err()),
        "lines[1].lineNumber: must be at least 1"
    );
    assert_eq!(
        message(validate_refund_lines(&[part(1, 0)]).unwrap_err()),
        "lines[0].quantity: must be at least 1"
    );
    assert_eq!(
        message(validate_refund_lines(&[part(2, 1), part(2, 1)]).unwrap_err()),
        "lines[1].lineNumber: line 2 is named twice"
    );
    assert!(validate_refund_lines(&[]).is_err());

    let mut lines = [
        LineState {
            quantity: 2,
            unit_price_minor: 1000,
            refunded_quantity: 1,
        },
        LineState {
            quantity: 1,
            unit_price_minor: 1000,
            refunded_quantity: 0,
        },
    ];
    let refund = validate_refund_lines(&[part(3, 1)]).unwrap();
    assert_eq!(
        message(apply_line_refund("o-1", &mut lines, &refund).unwrap_err()),
        "lines[0].lineNumber: order \"o-1\" has no line 3 (it has 2)"
    );
    let refund = validate_refund_lines(&[part(2, 1), part(1, 2)]).unwrap();
    assert_eq!(
        message(apply_line_refund("o-1", &mut lines, &refund).unwrap_err()),
        "lines[1].quantity: line 1 has 1 left to refund, not 2"
    );
    let mut lines = [lines[0], lines[1]];
    lines[1].refunded_quantity = 0;
    let refund = validate_refund_lines(&[part(1, 1), part(2, 1)]).unwrap();
    assert_eq!(
        apply_line_refund("o-1", &mut lines, &refund).unwrap(),
        money(2000)
    );
    assert_eq!(lines[0].refunded_quantity, 2);
    assert_eq!(refunded_by_lines(&lines), 3000);
}

#[test]
fn exactly_one_of_amount_and_lines() {
    let lines = vec![RefundLineInput {
        line_number: 1,
        quantity: 1,
    }];
    assert_eq!(
        message(RefundBy::one_of(Some(dec!(1)), Some(lines.clone())).unwrap_err()),
        "give either amount or lines, not both"
    );
    assert_eq!(
        message(RefundBy::one_of(None, None).unwrap_err()),
        "amount or lines is required"
    );
    assert_eq!(
        RefundBy::one_of(None, Some(lines.clone())).unwrap(),
        RefundBy::Lines(lines)
    );
}

/// An order of 30.00: coffee 2 × 10.00 (line 0) and tea 1 × 10.00 (line 1).
fn coffee_and_tea(coffee_back: i64, tea_back: i64) -> [LineState; 2] {
    [
        LineState {
            quantity: 2,
            unit_price_minor: 1000,
            refunded_quantity: coffee_back,
        },
        LineState {
            quantity: 1,
            unit_price_minor: 1000,
            refunded_quantity: tea_back,
        },
    ]
}

const COFFEE_BONUS: i64 = 2000; // 10 % of 20.00 × 10 points per unit
const BASE: i64 = 1500; // 5 % of 30.00 × 10

fn targets(lines: &[LineState], refunded_minor: i64) -> (i64, i64) {
    let order = OrderAfter {
        amount_minor: 3000,
        refunded_minor,
        lines,
    };
    (
        target(COFFEE_BONUS, Some(&[0]), &order),
        target(BASE, None, &order),
    )
}

#[test]
fn a_line_refund_reverses_only_the_accruals_on_its_lines() {
    // The tea line: none of the coffee bonus, a third of the whole-order accrual.
    assert_eq!(targets(&coffee_and_tea(0, 1), 1000), (0, 500));
    // One coffee unit: half the coffee bonus.
    assert_eq!(targets(&coffee_and_tea(1, 0), 1000), (1000, 500));
    // Both coffee units: all of it.
    assert_eq!(targets(&coffee_and_tea(2, 0), 2000), (2000, 1000));
    // Everything: everything.
    assert_eq!(targets(&coffee_and_tea(2, 1), 3000), (2000, 1500));
}

#[test]
fn an_amount_refund_spreads_over_what_is_left_of_every_line() {
    // Half the order by amount: half of every accrual.
    assert_eq!(targets(&coffee_and_tea(0, 0), 1500), (1000, 750));
    // The tea line, then 10.00 by amount: the 20.00 left is all coffee, so half of it.
    assert_eq!(targets(&coffee_and_tea(0, 1), 2000), (1000, 1000));
    // ... and the rest by amount: everything.
    assert_eq!(targets(&coffee_and_tea(0, 1), 3000), (2000, 1500));
    // One coffee unit, then 10.00 by amount over coffee 10.00 + tea 10.00 left: a quarter more.
    assert_eq!(targets(&coffee_and_tea(1, 0), 2000), (1500, 1000));
}

#[test]
fn an_order_without_lines_is_shared_by_amount() {
    let order = OrderAfter {
        amount_minor: 12345,
        refunded_minor: 4115,
        lines: &[],
    };
    // 61.72 × 41.15 / 123.45 = 20.5733… → 20.57, as refunds always did.
    assert_eq!(target(6172, None, &order), 2057);
    // An accrual on lines of an order whose lines are not loaded falls back to the order.
    assert_eq!(target(6172, Some(&[0]), &order), 2057);
}

#[test]
fn free_lines_are_shared_by_units() {
    let lines = [
        LineState {
            quantity: 1,
            unit_price_minor: 1000,
            refunded_quantity: 0,
        },
        LineState {
            quantity: 4,
            unit_price_minor: 0,
            refunded_quantity: 1,
        },
    ];
    let order = OrderAfter {
        amount_minor: 1000,
        refunded_minor: 0,
        lines: &lines,
    };
    assert_eq!(target(5000, Some(&[1]), &order), 1250);
}

#[test]
fn partial_line_refunds_add_up_to_exactly_the_accrual() {
    // 10.00 points on three units of 3.33 (9.99), refunded a unit at a time.
    let mut lines = [LineState {
        quantity: 3,
        unit_price_minor: 333,
        refunded_quantity: 0,
    }];
    let mut reversed = 0;
    let mut steps = Vec::new();
    for _ in 0..3 {
        lines[0].refunded_quantity += 1;
        let order = OrderAfter {
            amount_minor: 999,
            refunded_minor: refunded_by_lines(&lines),
            lines: &lines,
        };
        let now = target(1000, Some(&[0]), &order);
        steps.push(now - reversed);
        reversed = now;
    }
    assert_eq!(steps, [333, 334, 333]);
    assert_eq!(reversed, 1000);
}

#[test]
fn shares_round_half_to_even_exactly() {
    assert_eq!(share(3, 1, 6), 0); // 0.5 → 0
    assert_eq!(share(9, 1, 6), 2); // 1.5 → 2
    assert_eq!(share(5, 1, 2), 2); // 2.5 → 2
    assert_eq!(share(7, 1, 3), 2); // 2.33 → 2
    assert_eq!(share(8, 1, 3), 3); // 2.67 → 3
    assert_eq!(share(100, 5, 4), 100);
    assert_eq!(share(100, 0, 4), 0);
    // Near the largest amounts the proportion is still right.
    let max = crate::money::MAX_MINOR;
    let huge = i128::from(max) * i128::from(max);
    assert_eq!(share(max, huge / 2, huge), max / 2);
}

#[test]
fn accruals_keep_a_small_json_shape() {
    let accruals = vec![
        Accrual {
            entry: 7,
            points: 2000,
            qualifying: true,
            lines: Some(vec![0, 2]),
            reversed: 0,
        },
        Accrual {
            entry: 8,
            points: 1500,
            qualifying: false,
            lines: None,
            reversed: 500,
        },
    ];
    let json = serde_json::to_string(&accruals).unwrap();
    assert_eq!(
        json,
        r#"[{"entry":7,"points":2000,"qualifying":true,"lines":[0,2],"reversed":0},{"entry":8,"points":1500,"qualifying":false,"reversed":500}]"#
    );
    let back: Vec<Accrual> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, accruals);
}
