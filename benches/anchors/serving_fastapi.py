"""The Python peer of `sgml serve` for benches/anchors/serving.py: a minimal FastAPI
service doing the same job the way a Python team would write it.

Per request: verify the HS256 JWT and its scope (PyJWT), validate the body strictly
(pydantic, unknown fields refused), turn raw attributes into the 17 model columns with
the bundle's lookups (a line-for-line port of sgml_models::pricing::row_features), and
score with LightGBM's C++ (`Booster.predict`, one thread per request as in sgml
serve), answering prices and intervals with the model version.

Run: SGML_BUNDLE=<dir with model.txt, lookups.json, interval.json, manifest.json>
     SGML_JWT_SECRET=... uvicorn serving_fastapi:app --workers N
"""
import json
import math
import os
from pathlib import Path
from typing import Optional

import jwt
import lightgbm as lgb
import numpy as np
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel, ConfigDict, Field

BUNDLE = Path(os.environ["SGML_BUNDLE"])
SECRET = os.environ["SGML_JWT_SECRET"]
BOOSTER = lgb.Booster(model_str=(BUNDLE / "model.txt").read_text())
LOOKUPS = json.loads((BUNDLE / "lookups.json").read_text())
HALF_WIDTH = json.loads((BUNDLE / "interval.json").read_text())["half_width"]
VERSION = json.loads((BUNDLE / "manifest.json").read_text())["version"]
G = LOOKUPS["global_mean"]
GSTD = LOOKUPS["global_std"]
NAN = float("nan")
CONDITION = {"new": 0.0, "refurbished": 1.0, "used": 2.0}
TIERS = [2.0, 6.0, 12.0, 24.0, 100.0]

app = FastAPI()


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: Optional[str] = None
    category: Optional[str] = None
    brand: Optional[str] = None
    condition: Optional[str] = None
    market: str = Field(min_length=1)
    seller_country: Optional[str] = None
    title: Optional[str] = None
    month: Optional[int] = Field(default=None, ge=1, le=12)
    quantity: Optional[float] = Field(default=None, gt=0)
    guest: Optional[bool] = None


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[Row] = Field(min_length=1)


def encode(enc, key):
    level = enc["levels"].get(key) if key is not None else None
    if level is None:
        return G, 0
    prior = enc["prior_rows"]
    return (level["sum"] + prior * G) / (level["count"] + prior), level["count"]


def spread(enc, key):
    level = enc["levels"].get(key) if key is not None else None
    if level is None or level["count"] == 0:
        return GSTD
    n = level["count"]
    ss = max(level["sum_sq"] - level["sum"] ** 2 / n, 0.0)
    prior = enc["prior_rows"]
    return math.sqrt((ss + prior * GSTD * GSTD) / (n + prior))


def features(r: Row):
    q = 1.0 if r.quantity is None else r.quantity
    tier = sum(1 for b in TIERS if q >= b)
    pq = None if r.product_id is None else f"{r.product_id}\x1f{tier}"
    cm = None if r.category is None else f"{r.category}\x1f{r.market}"
    product, product_rows = encode(LOOKUPS["product"], r.product_id)
    category, category_rows = encode(LOOKUPS["category"], r.category)
    brand, brand_rows = encode(LOOKUPS["brand"], r.brand)
    title = r.title or ""
    return [
        product,
        spread(LOOKUPS["product"], r.product_id),
        math.log1p(product_rows),
        encode(LOOKUPS["product_quantity"], pq)[0],
        category,
        brand,
        encode(LOOKUPS["market"], r.market)[0],
        encode(LOOKUPS["category_market"], cm)[0],
        math.log1p(category_rows),
        math.log1p(brand_rows),
        CONDITION.get(r.condition, NAN),
        NAN if r.seller_country is None else float(r.seller_country != r.market),
        float(len(title)),
        float(len(title.split())),
        NAN if r.month is None else float(r.month),
        math.log(q),
        NAN if r.guest is None else float(r.guest),
    ]


def authorize(authorization: Optional[str], model: str):
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "missing bearer token")
    try:
        claims = jwt.decode(authorization[7:], SECRET, algorithms=["HS256"],
                            options={"require": ["exp", "sub"]}, leeway=30)
    except jwt.PyJWTError as e:
        raise HTTPException(401, f"invalid token: {e}")
    scopes = claims.get("scope", "").split()
    if f"predict:{model}" not in scopes and "predict:*" not in scopes:
        raise HTTPException(403, f"lacks scope predict:{model}")


@app.post("/v1/models/{name}/predict")
def predict(name: str, body: Request, authorization: Optional[str] = Header(default=None)):
    authorize(authorization, name)
    if name != "pricing":
        raise HTTPException(404, f"model {name} is not served here")
    x = np.array([features(r) for r in body.rows], dtype=np.float64)
    logp = BOOSTER.predict(x, num_threads=1)
    return {
        "model": name,
        "version": VERSION,
        "predictions": [
            {"price_base": math.exp(p), "price_base_low": math.exp(p - HALF_WIDTH),
             "price_base_high": math.exp(p + HALF_WIDTH)}
            for p in logp
        ],
    }
