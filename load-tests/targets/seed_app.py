"""The comparison target: a service in the shape of the tutorials this project grew from
(Flask with Flask-JWT-Extended: POST /login with JSON for a token, GET /api/data with it),
written here for the load tests, served by gunicorn. No revocation, no store: it only shows
what the starting point did per core. Not part of the product.
"""
import hmac
import os

from flask import Flask, jsonify, request
from flask_jwt_extended import JWTManager, create_access_token, jwt_required

app = Flask(__name__)
app.config["JWT_SECRET_KEY"] = os.environ.get("SEED_JWT_SECRET") or os.urandom(32).hex()
JWTManager(app)

USERS = {"alice": "wonderland"}


@app.post("/login")
def login():
    body = request.get_json(silent=True) or {}
    user, password = body.get("username", ""), body.get("password", "")
    known = USERS.get(user)
    if known is None or not hmac.compare_digest(known, password):
        return jsonify(error="invalid_grant"), 401
    return jsonify(access_token=create_access_token(identity=user), token_type="Bearer")


@app.get("/api/data")
@jwt_required()
def data():
    return jsonify(data="protected")


@app.get("/readyz")
def ready():
    return "ok"
