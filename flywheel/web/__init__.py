"""The web console: the loop at a glance (the terminal live view's figures and the report's plots,
refreshed in the browser) and the review queue, where a person confirms or corrects the outputs the
workers sent to review, each verdict a GroundTruth label on the labels topic.

Server-rendered pages (Flask, Jinja2 autoescaping) and one small script; see docs/guide/console.md.
"""
