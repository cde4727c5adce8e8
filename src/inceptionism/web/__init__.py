"""The web studio (``inceptionism serve``): a Gradio page over the same API as the CLI.

Modules: :mod:`.server` (``serve``: the process and its folder), :mod:`.app` (the page; imports Gradio),
:mod:`.tasks` (a dream or a zoom as a job's work), :mod:`.jobs` (threads, device slots, cancelling),
:mod:`.limits` (upload, pixel and work limits), :mod:`.cleanup` (old files removed).
"""
