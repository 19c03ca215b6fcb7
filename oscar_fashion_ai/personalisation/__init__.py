"""Personalisation: shopper events, multi-interest style profiles and the personalised homepage.

``preferences`` (events, profiles, recommendations, privacy), ``receivers`` (Oscar's view, basket, order and login
signals), ``views`` (homepage, recommendations API, events API, "Forget my style profile"), ``tasks`` (Celery) and
``recommend_evaluation`` (simulated shoppers).

``FASHION_AI["PERSONALISATION"] = False`` is search without tracking: no receiver or endpoint records an event or
merges one at login, no shopper key is handed out, and the homepage and the recommendations API show everyone the
popular products (docs/SETTINGS.md, "Search without tracking").
"""
