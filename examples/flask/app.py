import os
import secrets

import flask
from flask_login import LoginManager, UserMixin, login_required

import graven
from graven.flask import Graven

trail = graven.open("audit.db", signing_key="audit.key")  # created if absent
app = flask.Flask(__name__)
app.secret_key = os.environ.get("FLASK_SECRET_KEY") or secrets.token_hex(32)  # sessions: keep it secret
login_manager = LoginManager(app)
API_KEYS = {"dana-key": "u-1"}  # stands in for your users table


class User(UserMixin):
    def __init__(self, user_id):
        self.id = user_id


@login_manager.request_loader
def user_from_api_key(request):
    user_id = API_KEYS.get(request.headers.get("X-Api-Key", ""))
    return User(user_id) if user_id else None


Graven(app, trail, trusted_proxies=["10.0.0.0/8"])  # the whole set-up


@app.post("/invoices/<invoice_id>/void")
@login_required  # no key: 401, recorded as a denied http.request
def void_invoice(invoice_id):
    with trail.action("invoice.void", target=("invoice", invoice_id)) as a:
        if invoice_id.startswith("paid-"):
            raise graven.Denied("a paid invoice cannot be voided")  # 403, recorded once
        a.change("status", "open", "void")
    return {"voided": invoice_id}
