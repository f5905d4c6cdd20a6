"""The OpenFlow shell: the os-ken app, its fast lane, start-up, supervision.

Thin on purpose: it decodes what the framework hands it, calls the pure core
(``ryu_app.core``) and applies the one ``Effects`` value each call returns.
"""
