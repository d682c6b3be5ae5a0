// The portal's card form (/billing): Stripe.js card element + SetupIntent.
//
// Flow: ask our server for a SetupIntent (POST /api/portal/billing/setup-intent),
// confirm it with Stripe.js and the card element (card details go to Stripe
// only), then record the card with the consent checkbox
// (POST /api/portal/billing/cards/add) and reload the page.
//
// The form (#card-form) names the Stripe.js URL and the publishable key in
// data attributes; Stripe.js is loaded from that URL (configurable through
// STRIPE_JS_URL, so tests use localstripe's copy). The page's app may
// re-render the form, so this script watches for new, unmounted forms.
//
// It also runs the bank's check (3-D Secure) on /billing/authenticate: the
// element [data-authenticate-payment] names the charge, the Stripe.js URL
// and the publishable key; its button asks our server for the payment's
// client secret (POST /api/portal/billing/authenticate/begin, owner only),
// runs stripe.confirmCardPayment, then has the server re-read the payment
// from Stripe and settle it (POST /api/portal/billing/authenticate/complete)
// and reloads the page, which shows the outcome. The secret stays in memory.
(function () {
  "use strict";
  if (window.__rsolvCardForm) return;
  window.__rsolvCardForm = true;

  function loadStripe(url) {
    return new Promise(function (resolve, reject) {
      if (window.Stripe) return resolve(window.Stripe);
      var existing = document.querySelector("script[data-stripe-js]");
      var script = existing || document.createElement("script");
      script.addEventListener("load", function () { resolve(window.Stripe); });
      script.addEventListener("error", function () { reject(new Error("Stripe.js did not load")); });
      if (!existing) {
        script.src = url;
        script.setAttribute("data-stripe-js", "");
        document.head.appendChild(script);
      }
    });
  }

  async function post(endpoint, fields) {
    var body = new URLSearchParams(fields || {});
    var response = await fetch("/api/" + endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json" },
      body: body,
      credentials: "same-origin",
    });
    var text = await response.text();
    var data = null;
    try { data = JSON.parse(text); } catch (e) { data = text; }
    if (!response.ok) {
      var message = typeof data === "string" ? data : JSON.stringify(data);
      // Leptos serialises AppError; show its message when there is one.
      if (data && typeof data === "object") {
        message = data.Validation || data.Conflict || data.message || message;
      }
      throw new Error(message || "the request failed");
    }
    return data;
  }

  function setMessage(form, text, isError) {
    var el = form.querySelector("[data-card-message]");
    if (!el) return;
    el.textContent = text;
    el.className = isError
      ? "text-sm text-red-700 dark:text-red-300"
      : "text-sm text-slate-700 dark:text-slate-300";
  }

  async function mount(form) {
    form.setAttribute("data-mounted", "true");
    var button = form.querySelector("button[type=submit]");
    var host = form.querySelector("[data-card-element]");
    var Stripe;
    try {
      Stripe = await loadStripe(form.getAttribute("data-stripe-js"));
    } catch (e) {
      setMessage(form, "The card form could not load. Please reload the page.", true);
      return;
    }
    var stripe = Stripe(form.getAttribute("data-publishable-key"));
    var card = stripe.elements().create("card");
    card.mount(host);
    button.disabled = false;
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      var consent = form.querySelector("input[name=consent]");
      if (!consent.checked) {
        setMessage(form, "Please tick the box to authorise charges to this card.", true);
        consent.focus();
        return;
      }
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      setMessage(form, "Saving your card…", false);
      try {
        var intent = await post("portal/billing/setup-intent");
        var result = await stripe.confirmCardSetup(intent.client_secret, { payment_method: { card: card } });
        if (result.error) throw new Error(result.error.message || "the card was declined");
        await post("portal/billing/cards/add", { setup_intent_id: intent.setup_intent_id, consent: "on" });
        setMessage(form, "Card saved.", false);
        window.location.assign("/billing?card_added=1");
      } catch (e) {
        setMessage(form, "The card was not saved: " + e.message, true);
        button.disabled = false;
        button.removeAttribute("aria-busy");
      }
    });
  }

  function say(box, text, isError) {
    var el = box.querySelector("[data-authenticate-message]");
    if (!el) return;
    el.textContent = text;
    el.className = isError
      ? "mt-2 min-h-5 text-sm text-red-700 dark:text-red-300"
      : "mt-2 min-h-5 text-sm text-slate-700 dark:text-slate-300";
  }

  async function mountAuthentication(box) {
    box.setAttribute("data-mounted", "true");
    var button = box.querySelector("button");
    var charge = box.getAttribute("data-charge");
    var Stripe;
    try {
      Stripe = await loadStripe(box.getAttribute("data-stripe-js"));
    } catch (e) {
      say(box, "Your bank's check could not load. Please reload the page.", true);
      return;
    }
    var stripe = Stripe(box.getAttribute("data-publishable-key"));
    button.disabled = false;
    button.addEventListener("click", async function () {
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      say(box, "Opening your bank's check…", false);
      try {
        var auth = await post("portal/billing/authenticate/begin", { charge: charge });
        var data = auth.payment_method ? { payment_method: auth.payment_method } : undefined;
        var result = await stripe.confirmCardPayment(auth.client_secret, data);
        say(box, result.error ? "Checking the outcome with Stripe…" : "Confirmed. Recording your payment…", false);
        // Whatever Stripe.js said, the server asks Stripe and settles it.
        var done = await post("portal/billing/authenticate/complete", { charge: charge });
        say(box, done.message, done.status !== "succeeded");
        window.location.assign("/billing/authenticate?charge=" + encodeURIComponent(charge));
      } catch (e) {
        say(box, "The payment was not confirmed: " + e.message, true);
        button.disabled = false;
        button.removeAttribute("aria-busy");
      }
    });
  }

  function scan() {
    document.querySelectorAll("form[data-card-form]:not([data-mounted])").forEach(mount);
    document.querySelectorAll("[data-authenticate-payment]:not([data-mounted])").forEach(mountAuthentication);
  }
  scan();
  new MutationObserver(scan).observe(document.documentElement, { childList: true, subtree: true });
})();
