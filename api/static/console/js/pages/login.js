// Sign in, or create an account (the first account of a platform becomes its ADMIN).
import { auth, gql } from '../api.js';
import { showError } from '../errors.js';
import { LOGIN, REGISTER } from '../ops.js';
import { field, h, messageArea } from '../ui.js';

export function render(main) {
  let mode = 'login';
  const messages = messageArea();
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = h('input', {
    type: 'password',
    name: 'password',
    autocomplete: 'current-password',
    required: true,
    minlength: '8',
  });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const heading = h('h1', {}, 'Sign in');
  const switcher = h('button', { type: 'button', class: 'link' }, 'Create an account instead');
  switcher.addEventListener('click', () => {
    mode = mode === 'login' ? 'register' : 'login';
    const registering = mode === 'register';
    heading.textContent = registering ? 'Create an account' : 'Sign in';
    submit.textContent = registering ? 'Create account' : 'Sign in';
    switcher.textContent = registering ? 'I have an account: sign in' : 'Create an account instead';
    password.autocomplete = registering ? 'new-password' : 'current-password';
    messages.replaceChildren();
    email.focus();
  });
  const form = h(
    'form',
    { class: 'card narrow', 'aria-labelledby': 'login-heading' },
    field('E-mail', email),
    field('Password', password, 'At least 8 characters.'),
    messages,
    h('div', { class: 'actions' }, submit, switcher),
  );
  heading.id = 'login-heading';
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const input = { email: email.value.trim(), password: password.value };
      const data = await gql(mode === 'login' ? LOGIN : REGISTER, { input });
      auth.start(mode === 'login' ? data.login : data.register);
      document.dispatchEvent(new Event('console:signed-in'));
    } catch (error) {
      showError(messages, error, { UNAUTHENTICATED: 'That e-mail and password do not match an account.' });
      submit.disabled = false;
    }
  });
  main.append(h('section', { class: 'login' }, heading, form));
  email.focus();
}
