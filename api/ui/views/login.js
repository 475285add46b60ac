// `/ui/login`: the password form, and single sign-on when the api has it configured.
// SSO lands back here with `?code=<one-time code>` (TMS_OIDC_POST_LOGIN_URL = …/ui/login).

import { signIn, signInWithCode, signedIn } from '../api.js';
import { h, mount, errorBox } from '../util.js';

export function render(main, _params, ctx) {
  const next = ctx.query.get('next');
  if (signedIn()) {
    ctx.onSignedIn(next);
    return null;
  }
  const errorSlot = h('div', { 'data-testid': 'login-error', 'aria-live': 'assertive', class: 'login-error' });
  const showError = (e) => {
    mount(errorSlot, errorBox(e));
  };
  const email = h('input', { id: 'login-email', name: 'email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Sign in to TMS'),
    h('div', { class: 'field' }, h('label', { for: 'login-email' }, 'Email'), email),
    h('div', { class: 'field' }, h('label', { for: 'login-password' }, 'Password'), password),
    submit,
    errorSlot);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    errorSlot.replaceChildren();
    try {
      await signIn(email.value, password.value);
      ctx.onSignedIn(next);
    } catch (err) {
      password.value = '';
      showError(err);
      submit.disabled = false;
      password.focus();
    }
  });
  const parts = [form];
  if (ctx.config && ctx.config.sso) {
    parts.push(h('div', { class: 'sso' },
      h('p', {}, 'or'),
      h('a', { class: 'button', href: '/auth/login', 'data-testid': 'sso-login' }, 'Sign in with single sign-on')));
  }
  mount(main, h('section', { class: 'login-page' }, parts));
  const code = ctx.query.get('code');
  if (code) {
    // The code is single-use: take it out of the address bar and history at once.
    window.history.replaceState({}, '', '/ui/login');
    signInWithCode(code).then(() => ctx.onSignedIn(null), showError);
  } else {
    email.focus();
  }
  return null;
}
