"""A seeded synthetic customer-churn table, with knobs that simulate drift.

Every random number is drawn up front, in a fixed order, from ``numpy.random.default_rng(seed)``;
the drift knobs only transform that one population. So ``make_churn(seed=3, ageing=5)`` is the
same customers as ``make_churn(seed=3)``, five years older, and every difference between the two
tables is the knob's doing.
"""

from __future__ import annotations

import math
import operator

import numpy as np
import pandas as pd

CHURN_TARGET = "churned"
CHURN_ID = "customer_id"
CHURN_NUMERIC = ["age", "tenure_months", "monthly_charges", "support_calls", "satisfaction"]
CHURN_CATEGORICAL = ["contract", "payment_method", "internet_service", "region"]
CHURN_FEATURES = [
    "age",
    "tenure_months",
    "contract",
    "monthly_charges",
    "payment_method",
    "internet_service",
    "support_calls",
    "region",
    "satisfaction",
]

CONTRACTS = ("month-to-month", "one-year", "two-year")
NEW_CONTRACT = "pay-as-you-go"
PAYMENT_METHODS = ("electronic check", "mailed check", "bank transfer", "credit card")
INTERNET_SERVICES = ("fiber", "dsl", "none")
REGIONS = ("north", "south", "east", "west")

MIN_AGE, MAX_AGE = 18, 90
#: `segment_shift` changes the churn of month-to-month customers under this tenure only
SHIFTED_TENURE_MONTHS = 6
SHIFTED_SEGMENT = "contract == 'month-to-month' and tenure_months < 6"  # a DataFrame.query
SATISFACTION_MISSING_SHARE = 0.04

# Log-odds of churning: one coefficient per term of `_churn_terms`. "before" is the mechanism of
# normal data; "after" is the one `mechanism_shift=1` switches to: price sensitivity much
# stronger, support calls and payment method stop mattering, the age effect reverses, and
# contracts, tenure and satisfaction hold customers less. Intercepts keep the churn rate near 25 %.
_MECHANISM_BEFORE: dict[str, float] = {
    "intercept": -1.95,
    "month_to_month": 1.30,
    "one_year": 0.50,
    "pay_as_you_go": 1.60,
    "tenure": -0.75,
    "charges": 0.25,
    "support_calls": 0.30,
    "electronic_check": 0.50,
    "fiber": 0.35,
    "satisfaction": -0.60,
    "age": -0.10,
}
_MECHANISM_AFTER: dict[str, float] = {
    "intercept": -1.25,
    "month_to_month": 0.20,
    "one_year": 0.10,
    "pay_as_you_go": 0.80,
    "tenure": 0.0,
    "charges": 0.80,
    "support_calls": 0.0,
    "electronic_check": 0.0,
    "fiber": -0.40,
    "satisfaction": -0.10,
    "age": 0.80,
}


def make_churn(
    n_customers: int = 5000,
    seed: int = 0,
    *,
    ageing: float = 0.0,
    price_change: float = 0.0,
    new_contract_share: float = 0.0,
    mechanism_shift: float = 0.0,
    segment_shift: float = 0.0,
    id_start: int = 0,
) -> pd.DataFrame:
    """Generate a synthetic customer-churn table, one row per customer.

    Columns, in order: ``customer_id`` ("C" and seven digits, counting up from ``id_start``),
    ``age`` (18-90), ``tenure_months``, ``contract``, ``monthly_charges``, ``payment_method``,
    ``internet_service``, ``support_calls``, ``region``, ``satisfaction`` (1-5, about 4 %
    missing) and ``churned`` (0/1, the target). Churn follows a logistic model:
    month-to-month contracts, high charges, short tenure, many support calls, electronic check
    and fiber raise it; long contracts, tenure and satisfaction lower it; older customers churn
    slightly less. About a quarter of customers churn, and a good model reaches a ROC AUC of
    about 0.82 on held-out data.

    The keyword-only knobs simulate drift. Each transforms the customers of the unshifted
    table of the same seed, so the knob's effect can be measured against that table.

    Args:
        n_customers: Number of rows.
        seed: Seed of ``numpy.random.default_rng``; the same seed gives the same table.
        ageing: Years added to every customer's age (capped at 90): an ageing customer base,
            a covariate shift. Churn follows the new ages through the unchanged mechanism.
        price_change: Relative change of every monthly charge, 0.15 = +15 %: a price rise
            (covariate shift); churn reacts to the new charges. Must be greater than -1.
        new_contract_share: Share of customers (each independently, with this probability)
            moved to a new contract type "pay-as-you-go" that normal data never contains:
            a new category, held by new customers (short tenure) paying a 10 % premium, who
            churn readily.
        mechanism_shift: From 0 to 1, blends the churn mechanism into a different one: price
            sensitivity much stronger, support calls and payment method irrelevant, the age
            effect reversed (concept drift). Features do not change, only who churns.
        segment_shift: Log-odds added to the churn of one segment only, month-to-month
            customers with under six months of tenure (`SHIFTED_SEGMENT`): concept drift in
            a segment, e.g. a competitor's offer aimed at new customers. 2.5 takes their churn
            from about 40 % to about 83 %; negative values make them churn less.
        id_start: Number of the first customer id, so later batches get fresh ids.

    Returns:
        A DataFrame with the columns above; string columns hold Python strings.

    Raises:
        ValueError: If an argument is out of range; the message names it.
    """
    n = _integer("n_customers", n_customers, minimum=1)
    seed = _integer("seed", seed, minimum=0)
    id_start = _integer("id_start", id_start, minimum=0)
    ageing = _finite("ageing", ageing)
    price_change = _finite("price_change", price_change)
    if price_change <= -1.0:
        raise ValueError(f"price_change must be greater than -1, got {price_change!r}")
    new_contract_share = _share("new_contract_share", new_contract_share)
    mechanism_shift = _share("mechanism_shift", mechanism_shift)
    segment_shift = _finite("segment_shift", segment_shift)

    rng = np.random.default_rng(seed)
    # Every draw happens here, in this order and with these sizes, whatever the knobs say.
    z_age = rng.standard_normal(n)
    u_contract = rng.random(n)
    e_tenure = rng.standard_exponential(n)
    u_internet = rng.random(n)
    z_charges = rng.standard_normal(n)
    u_payment = rng.random(n)
    u_region = rng.random(n)
    z_issues = rng.standard_normal(n)
    z_satisfaction = rng.standard_normal(n)
    u_missing = rng.random(n)
    u_new_contract = rng.random(n)
    e_new_tenure = rng.standard_exponential(n)
    u_churn = rng.random(n)

    # The population of normal data.
    base_age = np.clip(np.rint(46.0 + 15.0 * z_age), MIN_AGE, MAX_AGE)
    older = (base_age - 46.0) / 15.0
    p_month = np.clip(0.55 - 0.08 * older, 0.2, 0.8)
    p_one = np.full(n, 0.24)
    contract = _pick(u_contract, np.column_stack([p_month, p_one]))
    tenure_mean = np.array([14.0, 30.0, 46.0])[contract]
    tenure_cap = (base_age - MIN_AGE) * 12.0
    tenure = np.minimum(np.floor(tenure_mean * e_tenure), np.minimum(tenure_cap, 120.0))

    p_fiber = np.clip(0.45 - 0.08 * older, 0.1, 0.8)
    internet = _pick(u_internet, np.column_stack([p_fiber, np.full(n, 0.35)]))
    internet_charge = np.array([82.0, 56.0, 24.0])[internet]
    contract_discount = np.array([0.0, 4.0, 8.0])[contract]
    charges = np.maximum(internet_charge - contract_discount + 11.0 * z_charges, 12.0)

    p_echeck = np.clip(0.34 - 0.05 * older, 0.05, 0.6)
    p_mailed = np.clip(0.18 + 0.06 * older, 0.05, 0.6)
    payment = _pick(u_payment, np.column_stack([p_echeck, p_mailed, np.full(n, 0.24)]))
    region = _pick(u_region, np.array([[0.27, 0.24, 0.26]]))
    # The last draw; its rates do not depend on the knobs either. Fiber has more outages.
    support_calls = rng.poisson(np.exp(-0.35 + 0.45 * (internet == 0) + 0.5 * z_issues))

    satisfaction = 3.9 - 0.28 * support_calls - 0.012 * (charges - 60.0)
    satisfaction = satisfaction - 0.2 * z_issues + 0.75 * z_satisfaction
    satisfaction = np.round(np.clip(satisfaction, 1.0, 5.0), 1)

    # The knobs.
    age = np.clip(np.rint(base_age + ageing), MIN_AGE, MAX_AGE)
    charges = charges * (1.0 + price_change)
    new_contract = u_new_contract < new_contract_share
    contract = np.where(new_contract, len(CONTRACTS), contract)
    tenure = np.where(new_contract, np.minimum(np.floor(6.0 * e_new_tenure), tenure_cap), tenure)
    charges = np.round(np.where(new_contract, 1.1 * charges, charges), 2)

    coefficients = {
        term: (1.0 - mechanism_shift) * before + mechanism_shift * _MECHANISM_AFTER[term]
        for term, before in _MECHANISM_BEFORE.items()
    }
    terms = _churn_terms(
        age, tenure, contract, charges, payment, internet, support_calls, satisfaction
    )
    logit = np.zeros(n)
    for term, value in terms.items():
        logit += coefficients[term] * value
    if segment_shift:
        logit += segment_shift * ((contract == 0) & (tenure < SHIFTED_TENURE_MONTHS))
    churned = u_churn < 1.0 / (1.0 + np.exp(-logit))

    satisfaction = np.where(u_missing < SATISFACTION_MISSING_SHARE, np.nan, satisfaction)
    contract_names = np.array([*CONTRACTS, NEW_CONTRACT], dtype=object)
    return pd.DataFrame(
        {
            CHURN_ID: [f"C{i:07d}" for i in range(id_start, id_start + n)],
            "age": age.astype(np.int64),
            "tenure_months": tenure.astype(np.int64),
            "contract": contract_names[contract],
            "monthly_charges": charges,
            "payment_method": np.array(PAYMENT_METHODS, dtype=object)[payment],
            "internet_service": np.array(INTERNET_SERVICES, dtype=object)[internet],
            "support_calls": support_calls.astype(np.int64),
            "region": np.array(REGIONS, dtype=object)[region],
            "satisfaction": satisfaction,
            CHURN_TARGET: churned.astype(np.int64),
        }
    )


def _churn_terms(
    age: np.ndarray,
    tenure: np.ndarray,
    contract: np.ndarray,
    charges: np.ndarray,
    payment: np.ndarray,
    internet: np.ndarray,
    support_calls: np.ndarray,
    satisfaction: np.ndarray,
) -> dict[str, np.ndarray]:
    """The centred terms of the churn log-odds, keyed like the mechanism coefficients."""
    return {
        "intercept": np.ones(len(age)),
        "month_to_month": (contract == 0).astype(float),
        "one_year": (contract == 1).astype(float),
        "pay_as_you_go": (contract == len(CONTRACTS)).astype(float),
        "tenure": np.log1p(tenure / 12.0),
        "charges": (charges - 65.0) / 10.0,
        "support_calls": support_calls.astype(float),
        "electronic_check": (payment == 0).astype(float),
        "fiber": (internet == 0).astype(float),
        "satisfaction": satisfaction - 3.0,
        "age": (age - 46.0) / 10.0,
    }


def _pick(u: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Category codes from uniforms; `probabilities` holds all but the last category's columns."""
    thresholds = np.cumsum(np.broadcast_to(probabilities, (len(u), probabilities.shape[1])), axis=1)
    return (u[:, None] >= thresholds).sum(axis=1)


def _integer(name: str, value: int, *, minimum: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return number


def _finite(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _share(name: str, value: float) -> float:
    number = _finite(name, value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return number
