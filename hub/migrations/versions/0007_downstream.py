"""downstream: bulk export jobs and files, subscription events and deliveries

Revision ID: 0007_downstream
Revises: 0006_empi
Create Date: 2026-12-05 05:42:58
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_downstream'
down_revision = '0006_empi'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hub_export_job',
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('client_id', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('request', sa.Text(), nullable=False),
    sa.Column('spec', sa.Text(), nullable=False),
    sa.Column('access', sa.Text(), nullable=False),
    sa.Column('transaction_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('writers_mark', sa.BigInteger(), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished', sa.DateTime(timezone=True), nullable=True),
    sa.Column('exported', sa.BigInteger(), nullable=False),
    sa.Column('progress', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error_status', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('expires', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('job_id', name=op.f('pk_hub_export_job'))
    )
    with op.batch_alter_table('hub_export_job', schema=None) as batch_op:
        batch_op.create_index('ix_hub_export_job_status', ['status', 'created'], unique=False)
        batch_op.create_index('ix_hub_export_job_client', ['client_id', 'status'], unique=False)

    op.create_table('hub_subscription_delivery',
    sa.Column('delivery_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('subscription_id', sa.String(length=64), nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_attempt', sa.DateTime(timezone=True), nullable=True),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('delivery_pk', name=op.f('pk_hub_subscription_delivery'))
    )
    with op.batch_alter_table('hub_subscription_delivery', schema=None) as batch_op:
        batch_op.create_index('ix_hub_subscription_delivery_due', ['status', 'next_attempt'], unique=False)
        batch_op.create_index('ix_hub_subscription_delivery_subscription', ['subscription_id', 'delivery_pk'], unique=False)

    op.create_table('hub_subscription_event',
    sa.Column('event_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('enqueued', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('event_pk', name=op.f('pk_hub_subscription_event'))
    )
    op.create_table('hub_export_member',
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['hub_export_job.job_id'], name=op.f('fk_hub_export_member_job_id_hub_export_job'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'patient_id', name=op.f('pk_hub_export_member'))
    )
    op.create_table('hub_export_file',
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('file_name', sa.String(length=120), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['hub_export_job.job_id'], name=op.f('fk_hub_export_file_job_id_hub_export_job'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'file_name', name=op.f('pk_hub_export_file'))
    )
    with op.batch_alter_table('hub_resource', schema=None) as batch_op:
        batch_op.create_index('ix_hub_resource_type_pk', ['resource_type', 'res_pk'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('hub_resource', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_resource_type_pk')

    op.drop_table('hub_export_file')
    op.drop_table('hub_export_member')
    op.drop_table('hub_subscription_event')
    with op.batch_alter_table('hub_subscription_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_subscription_delivery_subscription')
        batch_op.drop_index('ix_hub_subscription_delivery_due')

    op.drop_table('hub_subscription_delivery')
    with op.batch_alter_table('hub_export_job', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_export_job_client')
        batch_op.drop_index('ix_hub_export_job_status')

    op.drop_table('hub_export_job')
