"""Personalisation: shopper events, multi-interest style profiles and the personalised homepage.

``preferences`` (events, profiles, recommendations, privacy), ``receivers`` (Oscar's view, basket, order and login
signals), ``views`` (homepage, recommendations API, events API, "Forget my style profile"), ``tasks`` (Celery) and
``recommend_evaluation`` (simulated shoppers). ``FASHION_AI["PERSONALISATION"] = False`` switches it off.
"""
